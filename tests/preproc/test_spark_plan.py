"""The Spark engine's pure parts (no PySpark needed): flags, output partitions, row stream."""

import numpy as np
import pytest

from preproc import cli
from preproc.spark import session, tasks
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


def test_spark_failure_names_the_executor_error():
    from preproc.spark.engine import spark_failure

    class Py4JJavaError(Exception):
        pass

    Py4JJavaError.__module__ = "py4j.protocol"
    message = (
        "An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 failed\n"
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        '  File "/work/preproc/units.py", line 104, in _plain\n'
        "OSError: /data/day_0 shrank while being read (at byte 1024)\n"
        "\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException\n"
    )
    assert spark_failure(Py4JJavaError(message)) == (
        "OSError: /data/day_0 shrank while being read (at byte 1024)"
    )
    assert spark_failure(ValueError("not Spark's")) is None


def test_shuffle_pieces_are_bounded_and_keep_their_order(monkeypatch):
    monkeypatch.setattr(tasks, "PIECE_ROWS", 4)
    pieces = list(tasks._pieces(np.arange(10), (2, 7, 1)))
    assert [key for key, _ in pieces] == [(2, 7, 1, 0), (2, 7, 1, 4), (2, 7, 1, 8)]
    assert np.concatenate([p for _, p in pieces]).tolist() == list(range(10))
