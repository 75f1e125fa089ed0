"""Inspect a binary dataset: metadata, file-size validation, first rows decoded.

``python -m tools.inspect_dataset DIR [--rows 5]``. Works on every layout
``load_metadata`` reads: ``preproc``'s (``feature_spec.yaml`` and
``metadata.json``, or ``metadata.json`` alone), a ``feature_spec.yaml`` alone
(NVIDIA DLRM_and_DCNv2), and NVIDIA's ``model_size.json`` alone (row counts
and dtypes derived from the files). Exits with status 1
when a file is missing or its size disagrees with the metadata, or when a
decoded id lies outside its table.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from models.data import feature_spec as fs
from models.data.metadata import DatasetError, DatasetMetadata, load_metadata


def describe(meta: DatasetMetadata) -> dict:
    """What the metadata says, JSON-ready (the derived values for NVIDIA's layout)."""
    summary = {
        "cardinalities": list(meta.cardinalities),
        "categorical_dtypes": [dtype.name for dtype in meta.categorical_dtypes],
        "num_numerical_features": meta.num_numerical_features,
        "rows": dict(meta.rows),
    }
    if meta.source == "ours":
        summary |= {k: v for k, v in meta.raw.items() if k not in summary}
    return summary


def validate(meta: DatasetMetadata) -> list[str]:
    """Problems found (empty when every file has the size the metadata implies)."""
    problems = []
    for split, rows in meta.rows.items():
        if rows == 0 and not meta.spec.split_files(meta.root, split).label.parent.exists():
            continue
        problems += meta.spec.check_files(meta.root, split, rows)
    if meta.source == "ours":
        for t, rows in enumerate(meta.cardinalities):
            vocab = meta.root / fs.vocab_file(t)
            size = np.load(vocab, mmap_mode="r").shape[0] if vocab.exists() else rows - 1
            if size + 1 != rows:
                problems.append(f"{vocab}: {size} values, cardinality {rows}")
    return problems


def first_rows(meta: DatasetMetadata, split: str, rows: int) -> tuple[list[str], list[str]]:
    """The first ``rows`` rows of ``split`` decoded, and the ids among them outside their table."""
    n = max(0, min(rows, meta.rows[split]))
    files = meta.spec.split_files(meta.root, split)
    width = meta.num_numerical_features
    labels = np.fromfile(files.label, fs.LABEL_DTYPE, count=n)
    numerical = np.zeros((n, 0), fs.NUMERICAL_DTYPE)
    if files.numerical is not None:
        numerical = np.fromfile(files.numerical, fs.NUMERICAL_DTYPE, count=n * width)
        numerical = numerical.reshape(n, width)
    hotness = meta.spec.hotness
    # Per table [n, hotness] ids; a multi-hot row may end in PAD_ID padding.
    cats = [
        np.fromfile(path, dtype, count=n * h).astype(np.int64).reshape(n, h)
        for path, dtype, h in zip(files.categorical, meta.categorical_dtypes, hotness, strict=True)
    ]
    vocabs = []
    for t in range(meta.num_tables):
        path = meta.root / fs.vocab_file(t)
        vocabs.append(np.load(path, mmap_mode="r") if path.exists() else None)
    table_rows = np.asarray(meta.cardinalities)
    problems = []
    outside = []
    for t, ids in enumerate(cats):
        bad = (ids >= table_rows[t]) | ((ids < 0) & ((ids != fs.PAD_ID) | (hotness[t] == 1)))
        outside.append(bad)
        problems += [
            f"{files.categorical[t]}: row {i} holds id {ids[i, j]}, outside "
            f"table {t}'s [0, {table_rows[t]})"
            for i, j in zip(*np.nonzero(bad), strict=True)
        ]
    lines = []
    for i in range(n):
        numbers = " ".join(f"{v:.3g}" for v in numerical[i])
        ids = []
        for t, row in enumerate(cats):
            decoded = []
            for j, value in enumerate(row[i]):
                if hotness[t] > 1 and value == fs.PAD_ID:
                    continue
                if outside[t][i, j]:
                    raw = "=OUT_OF_RANGE"
                elif vocabs[t] is not None and value > 0:
                    raw = f"={vocabs[t][value - 1]:08x}"
                else:
                    raw = ""
                decoded.append(f"{value}{raw}")
            ids.append(" ".join(decoded) if hotness[t] == 1 else "[" + ",".join(decoded) + "]")
        lines.append(f"  [{i}] label={int(labels[i])} numerical=[{numbers}]")
        lines.append(f"      categorical (id=raw hash)=[{' '.join(ids)}]")
    return lines, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.inspect_dataset", description=__doc__)
    parser.add_argument("dataset_dir")
    parser.add_argument("--rows", type=int, default=5, help="rows decoded per split")
    args = parser.parse_args(argv)
    try:
        meta = load_metadata(args.dataset_dir, validate=False)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    source = {
        "ours": fs.METADATA_FILE,
        "feature_spec": fs.FEATURE_SPEC_FILE,
        "nvidia": f"{fs.MODEL_SIZE_FILE} (NVIDIA layout)",
    }[meta.source]
    print(f"dataset {args.dataset_dir} ({source})")
    for key, value in describe(meta).items():
        print(f"  {key}: {json.dumps(value)}")
    problems = validate(meta)
    for split in meta.rows:
        directory = str(meta.spec.split_files(meta.root, split).label.parent)
        if not any(p.startswith(directory) for p in problems):
            print(f"{split}: {meta.rows[split]:,} rows")
            lines, bad_ids = first_rows(meta, split, args.rows)
            print("\n".join(lines))
            problems += bad_ids
    if problems:
        print("INVALID:\n  " + "\n  ".join(problems))
        return 1
    print("all file sizes match the metadata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
