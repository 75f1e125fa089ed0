"""Bad rows never vanish: counted, logged with file:line and reason, or fatal under fail."""

import json

import pytest

from preproc.cli import main
from preproc.rejects import BadRowError
from tests.preproc.helpers import preprocess, sample, sample_lines

STRIPPED = "paddlerec_trailing_fields_stripped.tsv"


def test_stripped_fields_file_is_rejected_line_by_line(tmp_path):
    good = sample("deepctr_criteo_sample.tsv")
    meta = preprocess([good, sample(STRIPPED)], tmp_path, unit_bytes=4096)
    assert meta["rows_rejected"]["field_count"] == 75
    assert sum(meta["rows_rejected"].values()) == 75
    assert meta["rows_read"] == 275 == meta["rows_written"] + 75
    lines = (tmp_path / "rejects.tsv").read_bytes().split(b"\n")
    assert lines[0] == b"file\tline\treason\tdetail\traw_line" and lines[-1] == b""
    raw = sample_lines(STRIPPED)
    fields_per_line = [r.count(b"\t") + 1 for r in raw[:75]]
    for number, entry in enumerate(lines[1:-1], start=1):
        file, line, reason, detail, raw_line = entry.split(b"\t", 4)
        assert file.decode() == sample(STRIPPED)
        assert int(line) == number
        assert reason == b"field_count"
        assert detail == f"{fields_per_line[number - 1]} fields, expected 40".encode()
        assert raw_line == raw[number - 1]


def test_fail_stops_at_first_bad_row_with_file_and_line(tmp_path):
    with pytest.raises(BadRowError, match=rf"{STRIPPED}:1: field_count: 38 fields"):
        preprocess([sample(STRIPPED)], tmp_path / "a", on_bad_row="fail")
    assert not (tmp_path / "a" / "metadata.json").exists()


def test_fail_reports_line_number_inside_a_later_unit(tmp_path):
    good = sample_lines("kaggle_train_head.tsv")
    lines = [*good[:1500], b"1\tnot a row", *good[1500:]]
    path = tmp_path / "input.tsv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(BadRowError, match=r"input.tsv:1501: field_count: 2 fields"):
        preprocess([str(path)], tmp_path / "out", on_bad_row="fail", unit_bytes=16 << 10)


def test_every_reason_is_counted_and_accounted(tmp_path):
    good = sample_lines("deepctr_criteo_sample.tsv")[:20]
    fields = good[0].split(b"\t")
    bad = [
        b"",
        b"\t".join([b"2", *fields[1:]]),
        b"\t".join([fields[0], b"x1", *fields[2:]]),
        b"\t".join([*fields[:20], b"zzzzzzzz", *fields[21:]]),
        b"\t".join(fields[:30]),
    ]
    path = tmp_path / "mixed.tsv"
    path.write_bytes(b"\n".join(good[:10] + bad + good[10:]) + b"\n")
    meta = preprocess([str(path)], tmp_path / "out", unit_bytes=2048)
    assert meta["rows_rejected"] == {
        "empty_line": 1,
        "field_count": 1,
        "bad_label": 1,
        "bad_integer": 1,
        "bad_categorical": 1,
        "gzip_error": 0,
    }
    assert meta["rows_read"] == 25 and meta["rows_written"] == 20
    rejects = (tmp_path / "out" / "rejects.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[1]) for r in rejects] == [11, 12, 13, 14, 15]


def test_cli_fail_exit_code_and_message(tmp_path, capsys):
    code = main(
        [
            "--input_files",
            sample(STRIPPED),
            "--output_dir",
            str(tmp_path / "out"),
            "--on_bad_row",
            "fail",
            "--num_workers",
            "1",
        ]
    )
    assert code == 1
    assert f"{STRIPPED}:1: field_count" in capsys.readouterr().err


def test_cli_option_errors_name_the_flag(tmp_path, capsys):
    args = ["--input_files", sample(STRIPPED), "--output_dir", str(tmp_path / "out")]
    assert main([*args, "--unit_mb", "0"]) == 1
    assert "(--unit_mb x 2**20) must be >= 1024, got 0" in capsys.readouterr().err


def test_summary_is_printed_and_saved(tmp_path, capsys):
    code = main(
        [
            "--input_files",
            sample("deepctr_criteo_sample.tsv"),
            sample(STRIPPED),
            "--output_dir",
            str(tmp_path / "out"),
            "--frequency_threshold",
            "3",
            "--num_workers",
            "1",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "rows read 275 = written 200 + rejected 75 (field_count 75)" in out
    summary = json.loads((tmp_path / "out" / "preproc_summary.json").read_text())
    assert summary["rows_read"] == 275 and summary["peak_memory_mb"]["coordinator"] > 0
    assert set(summary["seconds"]) >= {"pass1_count_s", "pass2_transform_s", "total_s"}
