"""Input variants: CRLF, empty files, gzip (whole and truncated), unlabeled rows, day files."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from preproc import cli
from preproc.rejects import BadRowError
from tests.preproc.helpers import preprocess, read_split, sample, sample_lines, tree_bytes

KAGGLE = "kaggle_train_head.tsv"


def test_crlf_file_gives_the_same_dataset(tmp_path):
    crlf = tmp_path / "crlf.tsv"
    crlf.write_bytes(b"\r\n".join(sample_lines(KAGGLE)))
    lf = tmp_path / "lf.tsv"
    shutil.copy(sample(KAGGLE), lf)
    preprocess([str(lf)], tmp_path / "a", unit_bytes=64 << 10)
    preprocess([str(crlf)], tmp_path / "b", unit_bytes=64 << 10)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    a.pop("metadata.json"), b.pop("metadata.json")  # input sizes differ
    assert a == b


def test_empty_file_among_inputs_is_accepted_and_named(tmp_path, capsys):
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    rejected = sample("paddlerec_trailing_fields_stripped.tsv")  # every row rejected
    inputs = [str(empty), sample("deepctr_criteo_sample.tsv"), rejected]
    meta = preprocess(inputs, tmp_path / "out")
    assert meta["rows_read"] == 275 and meta["input_files"][0]["bytes"] == 0
    saved = json.loads((tmp_path / "out" / "preproc_summary.json").read_text())
    assert saved["inputs_without_rows"] == [str(empty), rejected]
    out = capsys.readouterr().out
    assert f"warning: input files that gave no rows: {empty}, {rejected}" in out


def test_a_directory_given_as_input_is_named_as_such(tmp_path, capsys):
    args = ["--input_files", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    assert cli.main(args) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: invalid preprocessing options: input is a directory, not a file: {tmp_path} "
        "(name the files inside, e.g. DIR/day_*)"
    ]


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_a_utf8_bom_at_the_start_of_a_file_is_stripped(tmp_path, packed):
    data = Path(sample(KAGGLE)).read_bytes()
    with_bom = b"\xef\xbb\xbf" + data
    path = tmp_path / ("bom.tsv.gz" if packed else "bom.tsv")
    path.write_bytes(gzip.compress(with_bom) if packed else with_bom)
    preprocess([str(path)], tmp_path / "bom", shuffle=False, unit_bytes=64 << 10)
    preprocess([sample(KAGGLE)], tmp_path / "plain", shuffle=False, unit_bytes=64 << 10)
    bom, plain = tree_bytes(tmp_path / "bom"), tree_bytes(tmp_path / "plain")
    meta = json.loads(bom.pop("metadata.json"))
    plain.pop("metadata.json")
    assert sum(meta["rows_rejected"].values()) == 0 and meta["rows_written"] == 1999
    assert bom == plain  # the first row parsed, and identically


def test_only_empty_inputs_fail_clearly(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="no valid rows in 1 input file"):
        preprocess([str(empty)], tmp_path / "out")


def test_an_output_dir_that_is_a_file_fails_clearly(tmp_path):
    (tmp_path / "out").write_bytes(b"")
    with pytest.raises(ValueError, match=r"output_dir .*out exists and is not a directory"):
        preprocess([sample("deepctr_criteo_sample.tsv")], tmp_path / "out")


def test_gzip_input_matches_plain(tmp_path):
    packed = tmp_path / "kaggle.tsv.gz"
    packed.write_bytes(gzip.compress(Path(sample(KAGGLE)).read_bytes()))
    preprocess([sample(KAGGLE)], tmp_path / "plain")
    preprocess([str(packed)], tmp_path / "gz")
    plain, gz = tree_bytes(tmp_path / "plain"), tree_bytes(tmp_path / "gz")
    plain.pop("metadata.json"), gz.pop("metadata.json")
    assert plain == gz


def test_truncated_gzip_keeps_complete_lines_and_reports_the_damage(tmp_path):
    data = Path(sample(KAGGLE)).read_bytes()
    packed = gzip.compress(data)
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    meta = preprocess([str(cut)], tmp_path / "out")
    rejected = meta["rows_rejected"]
    assert rejected["gzip_error"] == 1 and sum(rejected.values()) == 1
    complete = meta["rows_written"]
    assert 0 < complete < 1999
    assert meta["rows_read"] == complete + 1
    # the accepted rows are exactly the file's first complete lines
    lines = data.split(b"\n")
    prefix = tmp_path / "prefix.tsv"
    prefix.write_bytes(b"\n".join(lines[:complete]) + b"\n")
    preprocess([str(prefix)], tmp_path / "ref")
    for split in ("train", "test"):
        for key, value in read_split(tmp_path / "ref", split).items():
            np.testing.assert_array_equal(read_split(tmp_path / "out", split)[key], value)
    reject = (tmp_path / "out" / "rejects.tsv").read_text().splitlines()[1].split("\t")
    assert reject[1] == str(complete + 1) and reject[2] == "gzip_error"
    assert "truncated" in reject[3]
    with pytest.raises(BadRowError, match=rf"cut.tsv.gz:{complete + 1}: gzip_error"):
        preprocess([str(cut)], tmp_path / "fail", on_bad_row="fail")


def test_unlabeled_input_needs_the_option(tmp_path):
    unlabeled = sample("kaggle_test_head_unlabeled.tsv")
    with pytest.raises(ValueError, match=r"looks unlabeled.*--unlabeled"):
        preprocess([unlabeled], tmp_path / "a")
    meta = preprocess([unlabeled], tmp_path / "b", labeled=False)
    assert meta["rows_written"] == 300 and not meta["labeled"]
    assert not read_split(tmp_path / "b", "train")["label"].any()
    with pytest.raises(ValueError, match=r"labeled.*drop --unlabeled"):
        preprocess([sample(KAGGLE)], tmp_path / "c", labeled=False)


def test_day_files_follow_the_criteo_split(tmp_path):
    lines = sample_lines(KAGGLE)[:1999]
    days = []
    for day, chunk in enumerate((lines[:900], lines[900:1500], lines[1500:])):
        path = tmp_path / f"day_{day}"
        path.write_bytes(b"\n".join(chunk) + b"\n")
        days.append(str(path))
    meta = preprocess(days, tmp_path / "out", shuffle=False)
    assert meta["split_rule"] == "days"
    assert meta["rows"] == {"train": 1500, "test": 250, "validation": 249}
    whole = tmp_path / "whole.tsv"
    whole.write_bytes(b"\n".join(lines) + b"\n")
    preprocess([str(whole)], tmp_path / "ref", shuffle=False, test_fraction=499 / 1999)
    reference = read_split(tmp_path / "ref", "train")["categorical"]
    # same vocabulary (all rows counted): train = days 0-1, test then validation = day 2
    out = tmp_path / "out"
    np.testing.assert_array_equal(read_split(out, "train")["categorical"], reference)
    tail = read_split(tmp_path / "ref", "test")["categorical"]
    np.testing.assert_array_equal(read_split(out, "test")["categorical"], tail[:250])
    np.testing.assert_array_equal(read_split(out, "validation")["categorical"], tail[250:])
    assert json.loads((out / "metadata.json").read_text())["test_fraction"] is None
