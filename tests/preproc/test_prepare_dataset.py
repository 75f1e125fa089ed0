"""``prepare_dataset.sh ENGINE THRESHOLD``: the engine argument becomes the preproc flags."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "preproc" / "prepare_dataset.sh"


def _run(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    """Runs the script with a PYTHON that records its arguments instead of preprocessing."""
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for name in ("day_1", "day_0.gz", "notes.txt"):
        (raw / name).write_bytes(b"")
    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    environ = dict(
        os.environ, PYTHON=str(fake), RAW_DATA_DIR=str(raw), DATA_DIR=str(tmp_path / "data")
    )
    environ.pop("SPARK_MASTER", None)
    environ.update(env)
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environ, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, [c.split() for c in calls]


def test_cpu_runs_the_local_engine_on_the_day_files(tmp_path):
    result, calls = _run(tmp_path, "CPU", "15", "--seed", "3", PREPROC_WORKERS="4")
    assert result.returncode == 0, result.stderr
    argv = calls[0]
    assert "--engine" not in argv and argv[argv.index("--num_workers") + 1] == "4"
    inputs = argv[argv.index("--input_files") + 1 : argv.index("--output_dir")]
    assert [Path(p).name for p in inputs] == ["day_0.gz", "day_1"]
    assert argv[argv.index("--output_dir") + 1] == str(tmp_path / "data" / "criteo_thr15")
    assert argv[-2:] == ["--seed", "3"]
    assert calls[1][:2] == ["-m", "tools.inspect_dataset"]


@pytest.mark.parametrize("master", [None, "spark://head:7077"])
def test_spark_passes_the_engine_and_master(tmp_path, master):
    env = {"SPARK_MASTER": master} if master else {}
    result, calls = _run(tmp_path, "spark", "3", **env)
    assert result.returncode == 0, result.stderr
    argv = calls[0]
    assert argv[argv.index("--engine") + 1] == "spark"
    assert argv[argv.index("--frequency_threshold") + 1] == "3"
    assert ("--spark_master" in argv) == (master is not None)
    if master:
        assert argv[argv.index("--spark_master") + 1] == master
    assert "spark engine" in result.stdout


def test_unknown_engine_is_a_usage_error(tmp_path):
    result, calls = _run(tmp_path, "TPU", "15")
    assert result.returncode == 2 and not calls
    assert "unknown engine 'TPU'" in result.stderr
