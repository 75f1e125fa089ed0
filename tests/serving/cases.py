"""Datasets for the serving tests, and the raw rows of their test split.

``criteo_case``: the real Criteo sample rows in the repository, preprocessed
with a frequency threshold (rare values share id 0) and missing fields.
``schema_case``: a generated click log (``tools.generate_clicks``) plus crafted
rows, under a schema with strings, non-ASCII values, quoted commas, missing
values, values rarer than their threshold, a hashed column, a multi-hot column
with empty elements and over-long lists, numbers with underscores, padding
whitespace and below -3, and one line preproc rejects.

The test split is the last 10% of the accepted rows in input order
(``preproc.splits``), so its raw rows are those lines, found with preproc's
own parsers.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from models.data.binary import BinaryDataset
from models.data.metadata import load_metadata
from preproc.config import PreprocConfig, parse_thresholds
from preproc.csv_parse import CsvParser, split_line
from preproc.parse import parse_block
from preproc.pipeline import run
from preproc.user_schema import Schema, read_schema
from tests.samples import SAMPLES_DIR
from tools.generate_clicks import generate

CRITEO_SAMPLES = ("kaggle_train_head.tsv", "deepctr_criteo_sample.tsv", "paddlerec_samples.tsv")

SCHEMA = {
    "format": "csv",
    "header": True,
    "columns": [
        {"name": "clicked", "role": "label"},
        {"name": "price", "role": "numerical", "transform": "log1p_clamp"},
        {"name": "dwell", "role": "numerical", "transform": "log3"},
        {"name": "user", "role": "categorical", "frequency_threshold": 3},
        {"name": "item", "role": "categorical", "hash_buckets": 64},
        {"name": "category", "role": "categorical"},
        {"name": "tags", "role": "multi_hot", "separator": "|", "hotness": 3,
         "frequency_threshold": 2},
    ],
}  # fmt: skip
# Appended to the generated log, so in its test split (clicked, price, dwell, user, item,
# category, tags).
CRAFTED = [
    ["1", " 1_000.5 ", "-7", "émile", "item 1, red", "cat_1", "t1||t2"],
    ["0", "", "", "", "", "", ""],
    ["1", "-5", "-2.5", "日本語", "brand new item", "cat_999", "t1|t2|t3|t4|t5|t6"],
    ["0", "1e3", "3.25", "u1", 'the "classic" one', "cat_2", "|t3|"],
    ["1", "\t7\x0b", "+.5", "u1", "item 2, blue", "", "t0|t0|t0|t0"],
    ["0", "12", "0", "émile", "item 1, red", "cat_1", "never_seen_tag"],
]
REJECTED = ["1", "\xa0 12 ", "1", "u1", "x", "cat_1", "t1"]  # NBSP in UTF-8: not a number


@dataclass(frozen=True)
class Case:
    """A preprocessed dataset and what made it."""

    root: Path
    inputs: tuple[str, ...]
    schema: Schema | None

    def test_rows(self) -> list[list[bytes]]:
        """The raw fields (label left out) of every row of the test split, in order."""
        rows = accepted_rows(self.inputs, self.schema)
        return rows[len(rows) - load_metadata(self.root).rows["test"] :]

    def test_split(self) -> tuple[np.ndarray, np.ndarray]:
        """``(numerical float32, categorical int32)`` of the test split, as training reads it."""
        metadata = load_metadata(self.root)
        rows = metadata.rows["test"]
        tables = range(metadata.num_tables)
        numerical, categorical, _ = BinaryDataset(self.root, "test", rows, tables).read_batch(0)
        return numerical, categorical


def accepted_rows(inputs: tuple[str, ...], schema: Schema | None) -> list[list[bytes]]:
    """Fields of the lines preproc accepts, in input order, the label left out."""
    rows: list[list[bytes]] = []
    for path in inputs:
        data = Path(path).read_bytes()
        if schema is None:
            rejected = set(parse_block(data).reject_lines.tolist())
            lines = data.split(b"\n")
            lines = lines[:-1] if lines[-1] == b"" else lines
            for index, line in enumerate(lines):
                if index not in rejected:
                    rows.append(line.removesuffix(b"\r").split(b"\t")[1:])
            continue
        block = CsvParser(schema, "log3").parse(data, skip_first_line=schema.header)
        rejected = set(block.reject_lines.tolist())
        lines = data.split(b"\n")[1 if schema.header else 0 :]
        lines = lines[:-1] if lines[-1] == b"" else lines
        label = [c.role for c in schema.columns].index("label")
        for index, line in enumerate(lines):
            if index not in rejected:
                text = line.removesuffix(b"\r").decode("latin-1")
                fields = split_line(text, schema.delimiter)
                rows.append([f.encode("latin-1") for i, f in enumerate(fields) if i != label])
    return rows


def criteo_case(root: Path) -> Case:
    inputs = tuple(str(SAMPLES_DIR / name) for name in CRITEO_SAMPLES)
    _preprocess(inputs, root / "criteo", None, (2,) * 26)
    return Case(root / "criteo", inputs, None)


def _csv_line(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


def schema_case(root: Path, rows: int = 2000) -> Case:
    root.mkdir(parents=True, exist_ok=True)
    log = root / "clicks.csv"
    generate(str(log), rows, seed=3, max_tags=5)
    with open(log, "a", encoding="utf-8", newline="") as out:
        for fields in CRAFTED[:3]:
            out.write(_csv_line(fields))
        out.write(_csv_line(REJECTED))
        for fields in CRAFTED[3:]:
            out.write(_csv_line(fields))
    schema_path = root / "clicks.schema.yaml"
    schema_path.write_text(yaml.safe_dump(SCHEMA, sort_keys=False), encoding="utf-8")
    schema = read_schema(schema_path)
    _preprocess((str(log),), root / "clicks", schema, parse_thresholds(0, None, schema))
    return Case(root / "clicks", (str(log),), schema)


def _preprocess(inputs, output: Path, schema: Schema | None, thresholds) -> None:
    config = PreprocConfig(
        input_files=tuple(inputs),
        output_dir=str(output),
        frequency_thresholds=thresholds,
        num_workers=1,
        schema=schema,
    )
    run(config)


def export_untrained(case: Case, path: Path, seed: int = 1) -> Path:
    """A small DLRM of the dataset's shape with its initial weights, exported with the
    raw-input signature (scores that differ from row to row, no training needed)."""
    from models.dlrm import DLRM
    from models.export import export_saved_model
    from models.serving.raw_input import RawInputSpec

    spec = RawInputSpec.from_dataset(case.root)
    model = DLRM(
        spec.cardinalities,
        embedding_dim=8,
        bottom_mlp_dims=(16, 8),
        top_mlp_dims=(16, 1),
        num_numerical_features=len(spec.numerical),
        hotness=spec.hotness,
        seed=seed,
    )
    numerical, categorical = case.test_split()
    model({"numerical": numerical[:2], "categorical": categorical[:2]})
    export_saved_model(model, str(path), spec)
    return path
