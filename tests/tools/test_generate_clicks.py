"""tools.generate_clicks: a CSV the schema path reads without rejects, with learnable labels."""

from __future__ import annotations

import csv
import json

import numpy as np
import yaml

from models.data.feature_spec import PAD_ID, read_feature_spec
from preproc.cli import main as preproc_main
from tools.generate_clicks import main


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties: half)."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def test_generated_log_preprocesses_cleanly_and_its_labels_are_learnable(tmp_path):
    out = tmp_path / "clicks.csv"
    assert main(["--output", str(out), "--num_rows", "6000", "--seed", "3"]) == 0
    schema_path = tmp_path / "clicks.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    rows = list(csv.reader(out.open(newline="", encoding="utf-8")))
    assert rows[0] == [c["name"] for c in schema["columns"]]
    body = rows[1:]
    assert len(body) == 6000 and all(len(r) == 7 for r in body)
    assert any("," in r[4] for r in body) and any('"' in r[4] for r in body)  # quoted fields
    assert 0.05 < np.mean([r[1] == "" for r in body]) < 0.2  # price missing ~10%
    assert max(len(r[6].split("|")) for r in body) == 5 and any(r[6] == "" for r in body)

    # Learnable: each item's click rate on the first half ranks the second half's clicks.
    labels = np.array([r[0] == "1" for r in body])
    items = [r[4] for r in body]
    half = len(body) // 2
    clicks: dict[str, list[int]] = {}
    for item, label in zip(items[:half], labels[:half], strict=True):
        clicks.setdefault(item, []).append(int(label))
    prior = labels[:half].mean()
    scores = np.array([np.mean(clicks.get(item, [prior])) for item in items[half:]])
    assert _auc(labels[half:], scores) > 0.55  # random labels: 0.5 +- 0.012

    data = tmp_path / "data"
    args = ["--schema", str(schema_path), "--input_files", str(out), "--output_dir", str(data)]
    assert preproc_main([*args, "--num_workers", "1"]) == 0
    metadata = json.loads((data / "metadata.json").read_text())
    assert metadata["rows_read"] == metadata["rows_written"] == 6000
    spec = read_feature_spec(data)
    assert spec.channels["categorical"] == ("user", "item", "category", "tags")
    assert spec.hotness == (1, 1, 1, 5)
    tags = np.fromfile(spec.split_files(data, "test").categorical[3], spec.categorical_dtypes[3])
    assert (tags == PAD_ID).any() and (tags > 0).any()


def test_without_tags_the_column_and_its_schema_entry_are_left_out(tmp_path):
    out = tmp_path / "clicks.csv"
    assert main(["--output", str(out), "--num_rows", "10", "--max_tags", "0"]) == 0
    header = out.read_text().splitlines()[0]
    assert header == "clicked,price,dwell,user,item,category"
    schema = yaml.safe_load((tmp_path / "clicks.schema.yaml").read_text())
    assert [c["role"] for c in schema["columns"]].count("multi_hot") == 0


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "x.csv"), "--num_rows", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: --num_rows must be >= 1, got 0"


def test_default_output_is_pinned_and_crosses_change_only_the_labels(tmp_path, capsys):
    import hashlib

    plain, crossed = tmp_path / "plain.csv", tmp_path / "crossed.csv"
    assert (
        main(["--output", str(plain), "--num_rows", "500", "--seed", "4", "--max_tags", "3"]) == 0
    )
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == (
        "9a1da62f03fc3deb220db4085e894e491178f3da193040cd7ccc5f0ec4ea5253"
    )
    capsys.readouterr()
    args = ["--output", str(crossed), "--num_rows", "500", "--seed", "4", "--max_tags", "3"]
    args += ["--crosses", "2"]
    assert main(args) == 0
    assert "true AUC (true click probability against the drawn labels, 2 cross(es))" in (
        capsys.readouterr().out
    )
    rows = [list(csv.reader(p.open(newline="", encoding="utf-8")))[1:] for p in (plain, crossed)]
    assert [r[1:] for r in rows[0]] == [r[1:] for r in rows[1]]
    assert [r[0] for r in rows[0]] != [r[0] for r in rows[1]]
