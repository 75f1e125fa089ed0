"""The Spark engine's pure parts (no PySpark needed): flags, output partitions, row stream."""

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from preproc import cli
from preproc.spark import session, tasks
from preproc.spark.failures import spark_failure
from preproc.transform_pass import RowStream
from tests.preproc.helpers import sample


def test_spark_master_needs_the_spark_engine(tmp_path, capsys):
    argv = ["--input_files", sample("deepctr_criteo_sample.tsv"), "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--spark_master", "local[2]"])
    assert exit_info.value.code == 2
    assert "--spark_master needs --engine spark" in capsys.readouterr().err


def test_missing_pyspark_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(session, "pyspark_missing", lambda: "--engine spark needs PySpark: ...")
    argv = ["--input_files", sample("deepctr_criteo_sample.tsv"), "--output_dir", str(tmp_path)]
    assert cli.main([*argv, "--engine", "spark"]) == 1
    assert capsys.readouterr().err == "error: --engine spark needs PySpark: ...\n"
    assert not (tmp_path / "metadata.json").exists()


def test_default_master(monkeypatch):
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert session.default_master(None, 3) == "local[3]"
    assert session.default_master("spark://h:7077", 3) == "spark://h:7077"
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "4242")  # under spark-submit
    assert session.default_master(None, 3) is None


def test_executor_python(monkeypatch):
    """spark.pyspark.python, else PYSPARK_PYTHON, else the driver's interpreter."""
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert session.executor_python(None) == sys.executable
    monkeypatch.setenv("PYSPARK_PYTHON", "/env/python")
    assert session.executor_python(None) == "/env/python"
    assert session.executor_python("/conf/python") == "/conf/python"


def _closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_master():
    closed = _closed_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        listening = server.getsockname()[1]
        assert session.unreachable_master(f"spark://127.0.0.1:{listening}") is None
        # High availability: one answering master of the list is enough.
        both = f"spark://127.0.0.1:{closed},127.0.0.1:{listening}"
        assert session.unreachable_master(both) is None
    failure = session.unreachable_master(f"spark://127.0.0.1:{closed}")
    assert failure.startswith(f"cannot reach the Spark master spark://127.0.0.1:{closed} (")
    assert "--spark_master" in failure
    for master in ("local[2]", "yarn", "k8s://https://host:443"):
        assert session.unreachable_master(master) is None


def test_unreachable_master_fails_fast_before_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(session, "pyspark_missing", lambda: None)
    master = f"spark://127.0.0.1:{_closed_port()}"
    output = tmp_path / "out"
    argv = ["--input_files", sample("deepctr_criteo_sample.tsv"), "--output_dir", str(output)]
    started = time.monotonic()
    assert cli.main([*argv, "--engine", "spark", "--spark_master", master]) == 1
    assert time.monotonic() - started < session.MASTER_CONNECT_TIMEOUT_S + 5
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the Spark master {master} (")
    assert err.count("\n") == 1
    assert not output.exists()


def test_output_partitions_in_file_order():
    ranges = [[("train", 0, 5)], [("train", 0, 2), ("test", 2, 9)], [("test", 0, 1)]]
    plan = tasks.plan_outputs(ranges, num_buckets=0, ordered_rows=3, cat_dtypes=(), seed=0)
    assert plan.num_partitions == {"train": 3, "test": 3, "validation": 0}
    assert plan.first_partition == {"train": 0, "test": 3, "validation": 6}
    assert [(o["train"], o["test"], o["validation"]) for o in plan.split_offsets] == [
        (0, 0, 0),
        (5, 0, 0),
        (7, 7, 0),
    ]
    assert [plan.split_of(p) for p in range(6)] == ["train"] * 3 + ["test"] * 3
    shuffled = tasks.plan_outputs(ranges, num_buckets=2, ordered_rows=3, cat_dtypes=(), seed=0)
    assert shuffled.num_partitions["train"] == 2 and shuffled.first_partition["test"] == 2
    assert shuffled.is_bucket(1) and not shuffled.is_bucket(2)


def test_row_stream_reads_contiguous_ranges_across_blocks():
    blocks = [np.arange(0, 4), np.arange(4, 4), np.arange(4, 10), np.arange(10, 11)]
    read = RowStream(iter(blocks))
    assert read(0, 3).tolist() == [0, 1, 2]
    assert read(3, 9).tolist() == [3, 4, 5, 6, 7, 8]
    assert read(9, 11).tolist() == [9, 10]
    with pytest.raises(RuntimeError, match="out of order"):
        read(0, 1)


class Py4JJavaError(Exception):
    """Stands for py4j's: spark_failure knows Spark's errors by their module."""


Py4JJavaError.__module__ = "py4j.protocol"


def _task_failure(*lines: str) -> Py4JJavaError:
    return Py4JJavaError(
        "An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 failed\n"
        + "\n".join(lines)
        + "\n\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException\n"
    )


def test_spark_failure_names_the_executor_error():
    error = _task_failure(
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):",
        '  File "/work/preproc/units.py", line 104, in _plain',
        "OSError: /data/day_0 shrank while being read (at byte 1024)",
    )
    assert spark_failure(error) == "OSError: /data/day_0 shrank while being read (at byte 1024)"
    assert spark_failure(error, "/opt/py") == spark_failure(error)
    assert spark_failure(ValueError("not Spark's")) is None


def test_spark_failure_names_the_executors_python_and_the_setting():
    def missing(module: str) -> Py4JJavaError:
        return _task_failure(
            '  File "./dlrm_preproc.zip/preproc/spark/tasks.py", line 21, in <module>',
            f"ModuleNotFoundError: No module named '{module}'",
        )

    line = spark_failure(missing("pandas"), "/opt/py")
    assert line.startswith("ModuleNotFoundError: No module named 'pandas' on the executors, ")
    assert "which run /opt/py;" in line and "(the driver's" not in line
    assert "--conf spark.pyspark.python=PATH" in line and "PYSPARK_PYTHON=PATH" in line
    assert "(the driver's, their default)" in spark_failure(missing("numpy"), sys.executable)
    # The engine ships its own packages: their absence is not the interpreter's.
    assert spark_failure(missing("preproc.tasks"), "/opt/py") == (
        "ModuleNotFoundError: No module named 'preproc.tasks'"
    )
    cannot_run = _task_failure(
        'java.io.IOException: Cannot run program "/opt/py": error=2, No such file or directory'
    )
    line = spark_failure(cannot_run, "/opt/py")
    assert line.startswith("executors cannot start Python /opt/py: No such file or directory; ")
    assert "spark.pyspark.python" in line and "\n" not in line


def test_shuffle_pieces_are_bounded_and_keep_their_order(monkeypatch):
    monkeypatch.setattr(tasks, "PIECE_ROWS", 4)
    pieces = list(tasks._pieces(np.arange(10), (2, 7, 1)))
    assert [key for key, _ in pieces] == [(2, 7, 1, 0), (2, 7, 1, 4), (2, 7, 1, 8)]
    assert np.concatenate([p for _, p in pieces]).tolist() == list(range(10))


def test_the_code_shipped_to_executors_imports_on_its_own(tmp_path):
    # A worker of a real cluster has only this zip of the project: every module the tasks
    # import must be in it (a local master would hide a missing one: it shares this checkout).
    archive = session._code_zip(str(tmp_path))
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import preproc.spark.tasks, models.data.feature_spec as m; print(m.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, archive], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(archive)  # from the zip, not this checkout
