"""The Spark engine on a real standalone cluster: a master and two workers on 127.0.0.1,
separate JVMs from the driver's, each executor starting its own Python.

The documented commands run as a user types them (``python -m preproc --spark_master``,
``spark-submit preproc/spark/submit.py``, ``SPARK_MASTER=... prepare_dataset.sh SPARK``)
and must write the local engine's bytes; a Python without the engine's packages and an
unreachable master must fail with one line that says what to change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "pyspark", reason="PySpark is not installed (pip install -r requirements-spark.txt)"
)
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (17 or later) on PATH", allow_module_level=True)

from tests.preproc.helpers import preprocess, tree_bytes
from tests.preproc.spark_cluster import free_port, loopback_env, spark_home, standalone_cluster
from tools.generate_criteo import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
_VARYING = ("seconds", "rows_per_second", "peak_memory_mb")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with standalone_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[str]:
    return generate(str(tmp_path_factory.mktemp("raw")), 4000, 2, seed=7)


def _summary(root: Path) -> dict:
    data = json.loads((root / "preproc_summary.json").read_text())
    return {k: v for k, v in data.items() if k not in _VARYING}


def _assert_local_bytes(days: list[str], output: Path, threshold: int, tmp_path: Path) -> None:
    local = tmp_path / f"local_thr{threshold}"
    preprocess(days, local, frequency_thresholds=(threshold,) * 26, num_workers=2)
    assert tree_bytes(output) == tree_bytes(local)
    assert _summary(output) == _summary(local)


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def _error_line(result: subprocess.CompletedProcess) -> str:
    """The driver's error line (spark-submit sends the driver's stderr to its stdout)."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "error: " in line]
    assert lines and lines[-1].startswith("error: "), (result.stdout + result.stderr)[-3000:]
    return lines[-1]


def _apps(cluster) -> list[str]:
    return [app["name"] for app in cluster.state()["completedapps"]]


def _preproc(days: list[str], output: Path, threshold: int = 2) -> list[str]:
    return [
        *("--input_files", *days, "--output_dir", str(output)),
        *("--frequency_threshold", str(threshold), "--num_workers", "2"),
    ]


def test_python_m_preproc_on_the_cluster(cluster, days, tmp_path):
    before = _apps(cluster).count("dlrm-preproc")
    command = [sys.executable, "-m", "preproc", "--engine", "spark"]
    output = tmp_path / "out"
    result = _run(
        [*command, "--spark_master", cluster.master_url, *_preproc(days, output)],
        loopback_env(tmp_path / "conf"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _apps(cluster).count("dlrm-preproc") == before + 1  # it ran on the cluster
    _assert_local_bytes(days, output, 2, tmp_path)


def test_spark_submit_on_the_cluster(cluster, days, tmp_path):
    # spark-submit starts the driver with python3 from PATH, as in an activated venv.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = loopback_env(tmp_path / "conf", PATH=path)
    output = tmp_path / "out"
    submit = [str(spark_home() / "bin" / "spark-submit"), "--master", cluster.master_url]
    result = _run([*submit, "preproc/spark/submit.py", *_preproc(days, output)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_local_bytes(days, output, 2, tmp_path)


def test_prepare_dataset_spark_on_the_cluster(cluster, days, tmp_path):
    env = loopback_env(
        tmp_path / "conf",
        SPARK_MASTER=cluster.master_url,
        RAW_DATA_DIR=str(Path(days[0]).parent),
        DATA_DIR=str(tmp_path / "data"),
        PYTHON=sys.executable,
        PREPROC_WORKERS="2",
    )
    result = _run(["bash", "preproc/prepare_dataset.sh", "SPARK", "15"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "spark engine" in result.stdout
    _assert_local_bytes(days, tmp_path / "data" / "criteo_thr15", 15, tmp_path)


def test_executors_without_the_packages_fail_with_one_line(cluster, days, tmp_path):
    """PYSPARK_PYTHON names an interpreter without numpy (this one, minus site-packages)."""
    bare = tmp_path / "bare_python"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    command = [sys.executable, "-m", "preproc", "--engine", "spark"]
    result = _run(
        [*command, "--spark_master", cluster.master_url, *_preproc(days, tmp_path / "out")],
        loopback_env(tmp_path / "conf", PYSPARK_PYTHON=str(bare)),
    )
    assert result.returncode == 1
    line = _error_line(result)
    assert line.startswith(
        "error: the Spark job failed: ModuleNotFoundError: No module named 'numpy' "
        f"on the executors, which run {bare}; "
    ), line
    assert "--conf spark.pyspark.python=PATH" in line and "PYSPARK_PYTHON=PATH" in line


def test_unreachable_master_fails_in_seconds(days, tmp_path):
    master = f"spark://127.0.0.1:{free_port()}"  # nothing listens there
    command = [str(spark_home() / "bin" / "spark-submit"), "--master", master]
    output = tmp_path / "out"
    env = loopback_env(tmp_path / "conf", PYSPARK_DRIVER_PYTHON=sys.executable)
    started = time.monotonic()
    result = _run([*command, "preproc/spark/submit.py", *_preproc(days, output)], env)
    # Spark alone retries for 60 s; the engine's check takes a connection attempt.
    assert time.monotonic() - started < 45
    assert result.returncode == 1
    assert _error_line(result).startswith(
        f"error: cannot reach the Spark master {master} (127.0.0.1:"
    )
    assert not output.exists()
