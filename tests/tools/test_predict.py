"""tools.predict: raw log files -> one score per accepted row in input order, rejects listed
with file:line:reason, as the dataset's own rows score through the id-input signature."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests.serving import cases
from tools import predict


@pytest.fixture(scope="module")
def criteo(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("criteo")
    case = cases.criteo_case(root / "data")
    return {"case": case, "model": cases.export_untrained(case, root / "model")}


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clicks")
    case = cases.schema_case(root / "data")
    return {"case": case, "model": cases.export_untrained(case, root / "model")}


def _scores(path: Path) -> tuple[list[str], np.ndarray]:
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    return [w for w, _ in lines], np.array([float(p) for _, p in lines], np.float32)


def _rejects(path: Path) -> list[list[str]]:
    return [line.split("\t")[:3] for line in path.read_text(encoding="latin-1").splitlines()[1:]]


def _by_ids(model: Path, case: cases.Case) -> np.ndarray:
    numerical, categorical = case.test_split()
    serve = tf.saved_model.load(str(model)).signatures["serving_default"]
    out = serve(numerical=tf.constant(numerical), categorical=tf.constant(categorical))
    return out["probability"].numpy()[:, 0]


def test_criteo_files_plain_and_gz_with_bad_lines(criteo, tmp_path, capsys):
    case = criteo["case"]
    first, *rest = case.inputs
    lines = Path(first).read_bytes().split(b"\n")
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"\n".join([lines[0], b"1\tx", lines[1], b"", b"2" + lines[2][1:], b""]))
    packed = tmp_path / "rest.tsv.gz"
    with gzip.open(packed, "wb") as out:
        for name in rest:
            out.write(Path(name).read_bytes())
    output = tmp_path / "scores.tsv"
    argv = ["--model", str(criteo["model"]), "--output", str(output), "--batch_size", "100"]
    assert predict.main([*argv, "--input_files", first, str(bad), str(packed)]) == 0
    where, scores = _scores(output)
    accepted = len(cases.accepted_rows(case.inputs, None))
    assert len(where) == accepted + 2 and np.isfinite(scores).all()
    assert where[0] == f"{first}:1"
    assert [w for w in where if w.startswith(f"{bad}:")] == [f"{bad}:1", f"{bad}:3"]
    in_packed = [int(w.rsplit(":", 1)[1]) for w in where if w.startswith(f"{packed}:")]
    assert in_packed == sorted(in_packed) and len(in_packed) == len(cases.accepted_rows(rest, None))
    # The last rows are the test split: as its stored ids score through serving_default.
    tested = _by_ids(criteo["model"], case)
    np.testing.assert_allclose(scores[-tested.size :], tested, rtol=1e-6)
    assert _rejects(output.with_name("scores.tsv.rejects.tsv")) == [
        [str(bad), "2", "field_count"],
        [str(bad), "4", "empty_line"],
        [str(bad), "5", "bad_label"],
    ]
    printed = capsys.readouterr().out
    assert f"scored {accepted + 2:,} of {accepted + 5:,} lines" in printed
    assert "rejected 3 (empty_line 1, field_count 1, bad_label 1)" in printed


def test_batch_size_does_not_change_a_score(criteo, tmp_path):
    outputs = []
    for batch in ("1000", "7"):
        out = tmp_path / f"scores_{batch}.tsv"
        argv = ["--model", str(criteo["model"]), "--output", str(out), "--batch_size", batch]
        assert predict.main([*argv, "--input_files", criteo["case"].inputs[1]]) == 0
        outputs.append(_scores(out))
    assert outputs[0][0] == outputs[1][0]
    np.testing.assert_allclose(outputs[0][1], outputs[1][1], rtol=1e-6)


def test_a_truncated_gz_scores_its_complete_lines_and_reports_the_rest(criteo, tmp_path):
    packed = tmp_path / "day.gz"
    data = Path(criteo["case"].inputs[0]).read_bytes()
    packed.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) // 2])
    output = tmp_path / "scores.tsv"
    argv = ["--model", str(criteo["model"]), "--output", str(output)]
    assert predict.main([*argv, "--input_files", str(packed)]) == 0
    where, _ = _scores(output)
    rejects = _rejects(tmp_path / "scores.tsv.rejects.tsv")
    assert where and rejects[-1][2] == "gzip_error"
    assert rejects[-1][1] == str(len(where) + len(rejects))  # the line after the last one read


def test_a_schema_log_with_strings_lists_and_a_bad_number(clicks, tmp_path):
    case = clicks["case"]
    output = tmp_path / "scores.tsv"
    argv = ["--model", str(clicks["model"]), "--output", str(output)]
    assert predict.main([*argv, "--input_files", *case.inputs]) == 0
    where, scores = _scores(output)
    rows = len(cases.accepted_rows(case.inputs, case.schema))
    assert len(where) == rows and where[0] == f"{case.inputs[0]}:2"  # line 1: the header
    tested = _by_ids(clicks["model"], case)
    np.testing.assert_allclose(scores[-tested.size :], tested, rtol=1e-6)
    rejects = _rejects(tmp_path / "scores.tsv.rejects.tsv")
    bad_line = rows + 1 + 1 - len(cases.CRAFTED) + 3  # header, rows, then the bad one
    assert rejects == [[case.inputs[0], str(bad_line), "bad_numerical"]]


def test_another_schema_names_the_same_columns_in_another_order(clicks, tmp_path):
    case = clicks["case"]
    with open(case.inputs[0], encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))
    order = [6, 0, 3, 1, 5, 4, 2]  # tags first, and an extra column
    reordered = tmp_path / "reordered.tsv"
    with open(reordered, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        for i, row in enumerate(table):
            writer.writerow([row[j] for j in order] + ["extra" if i == 0 else "x"])
    columns = {c["name"]: c for c in cases.SCHEMA["columns"]}
    schema = {
        "format": "tsv",
        "header": True,
        "columns": [columns[table[0][j]] for j in order]
        + [{"name": "extra", "role": "categorical"}],
    }
    schema_path = tmp_path / "reordered.yaml"
    schema_path.write_text(yaml.safe_dump(schema))
    outputs = []
    for inputs, extra in (
        ([case.inputs[0]], []),
        ([str(reordered)], ["--schema", str(schema_path)]),
    ):
        out = tmp_path / f"out{len(outputs)}.tsv"
        argv = ["--model", str(clicks["model"]), "--output", str(out), "--input_files", *inputs]
        assert predict.main([*argv, *extra]) == 0
        outputs.append(_scores(out)[1])
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_errors_name_what_is_wrong(criteo, clicks, tmp_path, capsys):
    out = ["--output", str(tmp_path / "s.tsv")]
    plain = tmp_path / "no_raw"
    shutil.copytree(criteo["model"], plain)
    info = plain / "dlrm_signature.json"
    info.write_text(info.read_text().replace('"raw_inputs"', '"other"'))
    unlabeled = cases.SAMPLES_DIR / "kaggle_test_head_unlabeled.tsv"
    schema_path = tmp_path / "short.yaml"
    schema_path.write_text(yaml.safe_dump({"columns": cases.SCHEMA["columns"][:4]}))
    runs = [
        (["--model", str(plain), "--input_files", str(unlabeled)], "has no serve_raw signature"),
        (["--model", str(criteo["model"]), "--input_files", str(unlabeled)], "--unlabeled"),
        (["--model", str(criteo["model"]), "--input_files", str(tmp_path / "none.tsv")],
         "input files not found"),
        (["--model", str(clicks["model"]), "--input_files", clicks["case"].inputs[0],
          "--schema", str(schema_path)], "the model takes a categorical column 'item'"),
        (["--model", str(tmp_path), "--input_files", str(unlabeled)],
         "dlrm_signature.json is missing"),
    ]  # fmt: skip
    for argv, message in runs:
        assert predict.main([*argv, *out]) == 2
        assert message in capsys.readouterr().err
    argv = ["--model", str(criteo["model"]), "--input_files", str(unlabeled), "--unlabeled"]
    assert predict.main([*argv, *out]) == 0
    assert len(_scores(tmp_path / "s.tsv")[0]) == 300
