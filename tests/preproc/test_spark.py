"""``--engine spark`` writes the same bytes as the local engine.

Every test runs both engines on the same inputs and options and compares every
output file (the run summary apart from its timings). One local[2]
SparkContext serves the whole module.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip(
    "pyspark", reason="PySpark is not installed (pip install -r requirements-spark.txt)"
)
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (17 or later) on PATH", allow_module_level=True)

from preproc.cli import main
from preproc.config import PreprocConfig, parse_thresholds
from preproc.rejects import BadRowError
from preproc.spark.engine import run as run_spark
from preproc.spark.session import spark_context
from preproc.user_schema import read_schema
from tests.preproc.helpers import (
    LABELED_SAMPLES,
    preprocess,
    sample,
    sample_lines,
    tree_bytes,
)
from tests.preproc.spark_cluster import loopback_env
from tools.generate_clicks import generate as generate_clicks
from tools.generate_criteo import generate

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[2]
_VARYING = ("seconds", "rows_per_second", "peak_memory_mb")


@pytest.fixture(scope="module", autouse=True)
def spark_session():
    settings = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    with spark_context("local[2]", settings) as sc:
        yield sc


def preprocess_spark(inputs: list[str], output_dir: Path, **options) -> dict:
    options.setdefault("frequency_thresholds", (2,) * 26)
    config = PreprocConfig(input_files=tuple(inputs), output_dir=str(output_dir), **options)
    run_spark(config)
    return json.loads((output_dir / "metadata.json").read_text())


def summary(root: Path) -> dict:
    data = json.loads((root / "preproc_summary.json").read_text())
    return {k: v for k, v in data.items() if k not in _VARYING}


def assert_same_output(inputs: list[str], tmp_path: Path, **options) -> dict:
    """Runs both engines; returns the metadata after checking every file is identical."""
    meta = preprocess(inputs, tmp_path / "local", **options)
    assert preprocess_spark(inputs, tmp_path / "spark", **options) == meta
    local, spark = tree_bytes(tmp_path / "local"), tree_bytes(tmp_path / "spark")
    assert sorted(local) == sorted(spark)
    for name in local:
        assert local[name] == spark[name], name
    assert summary(tmp_path / "local") == summary(tmp_path / "spark")
    return meta


def test_real_rows_several_units_and_buckets(tmp_path):
    meta = assert_same_output(
        [sample(n) for n in LABELED_SAMPLES],
        tmp_path,
        unit_bytes=200 << 10,
        shuffle_bucket_rows=1000,
    )
    assert meta["rows"]["train"] > 2 * 1000 and meta["split_rule"] == "fraction"


def test_generated_days_log1p_per_column_thresholds(tmp_path):
    days = generate(str(tmp_path / "raw"), 6000, 2, seed=3)
    meta = assert_same_output(
        days,
        tmp_path,
        frequency_thresholds=parse_thresholds(3, ["0=1", "5=10,20=0"]),
        numerical_transform="log1p_clamp",
        seed=11,
        unit_bytes=400 << 10,
        shuffle_bucket_rows=1000,
    )
    assert meta["rows"] == {"train": 3000, "test": 1500, "validation": 1500}
    assert meta["frequency_thresholds"][5] == 10


def _with_bad_rows(path: Path, lines: list[bytes]) -> None:
    bad = [
        b"",
        lines[0].replace(b"\t", b"\tx", 1),  # non-integer I1
        b"2" + lines[1][1:],  # label 2
        lines[2].rsplit(b"\t", 1)[0] + b"\tzz",  # non-hex categorical
        lines[3].rsplit(b"\t", 1)[0],  # a field short
    ]
    path.write_bytes(b"\n".join(lines[:40] + bad + lines[40:]) + b"\n")


def test_bad_rows_gz_and_truncated_gz_days(tmp_path):
    raw = tmp_path / "raw"
    day_0, day_1, day_2 = generate(str(raw), 3000, 3, seed=5, compress=True)
    plain = raw / "day_1"
    _with_bad_rows(plain, gzip.decompress(Path(day_1).read_bytes()).split(b"\n")[:-1])
    Path(day_1).unlink()
    packed = Path(day_2).read_bytes()
    Path(day_2).write_bytes(packed[: len(packed) * 2 // 3])  # truncated
    inputs = [day_0, str(plain), day_2]
    meta = assert_same_output(inputs, tmp_path, unit_bytes=128 << 10, shuffle_bucket_rows=700)
    rejected = meta["rows_rejected"]
    assert rejected["gzip_error"] == 1 and rejected["empty_line"] == 1
    assert sum(rejected.values()) == 6 and meta["rows_read"] == meta["rows_written"] + 6
    with pytest.raises(BadRowError) as local_error:
        preprocess(inputs, tmp_path / "local_fail", on_bad_row="fail", unit_bytes=128 << 10)
    with pytest.raises(BadRowError) as spark_error:
        preprocess_spark(inputs, tmp_path / "spark_fail", on_bad_row="fail", unit_bytes=128 << 10)
    assert str(spark_error.value) == str(local_error.value)
    assert str(local_error.value).startswith(f"{plain}:41: empty_line")


def test_unlabeled_unshuffled(tmp_path):
    meta = assert_same_output(
        [sample("kaggle_test_head_unlabeled.tsv")],
        tmp_path,
        labeled=False,
        shuffle=False,
        shuffle_bucket_rows=100,  # several ordered output partitions
        unit_bytes=32 << 10,
    )
    assert meta["rows_written"] == 300 and not meta["labeled"]


def test_command_line_engine_flag(tmp_path, capsys):
    lines = sample_lines("kaggle_train_head.tsv")[:600]
    source = tmp_path / "rows.tsv"
    source.write_bytes(b"\n".join(lines) + b"\n")
    common = ["--input_files", str(source), "--frequency_threshold", "2", "--seed", "4"]
    assert main([*common, "--output_dir", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    assert main([*common, "--output_dir", str(tmp_path / "spark"), "--engine", "spark"]) == 0
    out = capsys.readouterr().out
    assert "rows read 600 = written 600 + rejected 0 (none)" in out
    assert tree_bytes(tmp_path / "local") == tree_bytes(tmp_path / "spark")
    # A finished dataset is not recomputed.
    assert main([*common, "--output_dir", str(tmp_path / "spark"), "--engine", "spark"]) == 0
    assert "already a complete dataset" in capsys.readouterr().out


def test_only_empty_inputs_fail_as_locally(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="no valid rows in 1 input file") as error:
        preprocess_spark([str(empty)], tmp_path / "out")
    with pytest.raises(ValueError) as local_error:
        preprocess([str(empty)], tmp_path / "local")
    assert str(error.value) == str(local_error.value)


def test_interrupted_spark_run_resumes_with_the_local_engine(tmp_path, monkeypatch):
    """A Spark run stopped after its vocabularies leaves files the local engine can use."""
    from preproc.spark import engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    inputs = [sample("deepctr_criteo_sample.tsv"), sample("paddlerec_samples.tsv")]
    monkeypatch.setattr(engine, "_write_splits", interrupted)
    with pytest.raises(KeyboardInterrupt):
        preprocess_spark(inputs, tmp_path / "out", shuffle_bucket_rows=100)
    assert (tmp_path / "out" / "vocab" / "cat_25.npy").exists()
    assert not (tmp_path / "out" / "metadata.json").exists()
    preprocess(inputs, tmp_path / "out", shuffle_bucket_rows=100)
    preprocess(inputs, tmp_path / "fresh", shuffle_bucket_rows=100)
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "fresh")


def _clicks_with_bad_rows(path: Path, seed: int) -> Path:
    """A click CSV (quoted fields, missing floats, multi-hot tags of 0..4 values) with bad
    rows spread in and appended, and one row of 6 tags in a middle unit; returns its
    schema (which measures the hotness)."""
    schema = generate_clicks(str(path), 2500, seed=seed, max_tags=4)
    lines = path.read_bytes().split(b"\n")[:-1]
    middle = [
        b"1,2.5,1,u1,plain,cat_1",  # a column short
        b'0,1,1,u2,"item 3, red",cat_2,t1,t2',  # a column too many
        b"7,1,1,u3,plain,cat_3,t1",  # label 7
        b"x,1,1,u3,plain,cat_3,t1",  # non-numeric label
    ]
    # The longest list, in a unit without rejects (its summary stays remote).
    long_tags = b"1,1,1,u4,plain,cat_4,t1|t2|t3|t4|t5|t6"
    unclosed = b'1,1,1,u5,"item 5, red,cat_5,t1'  # unclosed quote, the last line
    rows = [*lines[:900], *middle, *lines[900:1800], long_tags, *lines[1800:], unclosed]
    path.write_bytes(b"\n".join(rows) + b"\n")
    return schema


def test_schema_csv_multi_hot_bad_rows(tmp_path):
    raw = tmp_path / "raw"
    first = raw / "clicks_a.csv"
    schema = read_schema(_clicks_with_bad_rows(first, seed=1))
    generate_clicks(str(raw / "clicks_b.csv"), 1500, seed=2, max_tags=4)
    inputs = [str(first), str(raw / "clicks_b.csv")]
    options = {
        "schema": schema,
        "frequency_thresholds": (2, 1, 3, 2),
        "unit_bytes": 32 << 10,
        "shuffle_bucket_rows": 700,
        "seed": 9,
    }
    meta = assert_same_output(inputs, tmp_path, **options)
    rejected = {k: v for k, v in meta["rows_rejected"].items() if v}
    assert rejected == {"field_count": 2, "bad_label": 2, "unclosed_quote": 1}
    assert meta["rows_read"] == 2500 + 1500 + 6 == meta["rows_written"] + 5
    assert meta["multi_hot_truncated_rows"] == {"tags": 0}
    assert meta["multi_hot_hotness"] == {
        "tags": {"hotness": 6, "longest_list": 6, "chosen_by": "longest_list"}
    }
    rejects = (tmp_path / "spark" / "rejects.tsv").read_text().splitlines()[1:]
    # Line 1 is the header; 899 rows (lines 2..900) come before the bad ones.
    assert [int(r.split("\t")[1]) for r in rejects] == [901, 902, 903, 904, 2507]
    failing = {**options, "on_bad_row": "fail"}
    with pytest.raises(BadRowError) as local_error:
        preprocess(inputs, tmp_path / "local_fail", **failing)
    with pytest.raises(BadRowError) as spark_error:
        preprocess_spark(inputs, tmp_path / "spark_fail", **failing)
    assert str(spark_error.value) == str(local_error.value)
    assert str(local_error.value).startswith(f"{first}:901: field_count")


@pytest.mark.parametrize(
    ("keys", "hotness"),
    [({"max_hotness": 4}, (4, "max_hotness")), ({"hotness": 5}, (5, "hotness"))],
)
def test_schema_hotness_capped_or_fixed(tmp_path, keys, hotness):
    data = tmp_path / "raw" / "clicks.csv"
    path = _clicks_with_bad_rows(data, seed=4)
    schema = yaml.safe_load(path.read_text())
    schema["columns"][-1].update(keys)
    path.write_text(yaml.safe_dump(schema))
    options = {
        "schema": read_schema(path),
        "frequency_thresholds": (2, 1, 3, 2),
        "unit_bytes": 32 << 10,
        "shuffle_bucket_rows": 700,
        "seed": 9,
    }
    meta = assert_same_output([str(data)], tmp_path, **options)
    assert meta["multi_hot_truncated_rows"] == {"tags": 1}  # the row of 6 tags
    chosen, rule = hotness
    assert meta["multi_hot_hotness"] == {
        "tags": {"hotness": chosen, "longest_list": 6, "chosen_by": rule}
    }


def test_command_line_schema_with_spark_engine(tmp_path, capsys):
    data = tmp_path / "clicks.csv"
    schema = generate_clicks(str(data), 400, seed=3, max_tags=2)
    common = ["--schema", str(schema), "--input_files", str(data), "--frequency_threshold", "1"]
    assert main([*common, "--output_dir", str(tmp_path / "local")]) == 0
    assert main([*common, "--output_dir", str(tmp_path / "spark"), "--engine", "spark"]) == 0
    assert "rows read 400 = written 400" in capsys.readouterr().out
    assert tree_bytes(tmp_path / "local") == tree_bytes(tmp_path / "spark")


def test_executors_run_the_drivers_python_not_python3_from_path(tmp_path):
    """``python -m preproc`` from an interpreter whose directory is not on PATH (a venv
    not activated): the executors of local[2] must not start PATH's python3."""
    days = generate(str(tmp_path / "raw"), 2000, 2, seed=2)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("python3", "python"):
        fake = fake_bin / name
        fake.write_text("#!/bin/sh\necho 'not the driver python' >&2\nexit 3\n")
        fake.chmod(0o755)
    env = loopback_env(tmp_path / "conf", PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    argv = ["--input_files", *days, "--frequency_threshold", "2", "--num_workers", "2"]
    command = [sys.executable, "-m", "preproc", "--engine", "spark", *argv]
    result = subprocess.run(
        [*command, "--output_dir", str(tmp_path / "spark")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    preprocess(days, tmp_path / "local")
    assert tree_bytes(tmp_path / "local") == tree_bytes(tmp_path / "spark")
