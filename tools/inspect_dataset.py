"""Inspect a binary dataset: metadata, file-size validation, first rows decoded.

``python -m tools.inspect_dataset DIR [--rows 5]``. Works on datasets written
by ``preproc`` (``metadata.json``) and by NVIDIA's pipeline (``model_size.json``
only: row counts and dtypes are derived from the files). Exits with status 1
when a file is missing or its size disagrees with the metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from preproc.schema import NUM_CATEGORICAL, NUM_NUMERICAL, SPLITS, categorical_dtype


def load_layout(root: str) -> dict:
    """Cardinalities, dtypes and per-split rows from metadata.json or model_size.json."""
    meta_path = os.path.join(root, "metadata.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        meta["source"] = "metadata.json"
        return meta
    size_path = os.path.join(root, "model_size.json")
    if not os.path.exists(size_path):
        raise ValueError(f"{root}: neither metadata.json nor model_size.json found")
    with open(size_path) as f:
        largest_ids = list(json.load(f).values())
    cardinalities = [int(v) + 1 for v in largest_ids]
    rows = {}
    for split in SPLITS:
        label = os.path.join(root, split, "label.bin")
        if os.path.exists(label):
            rows[split] = os.path.getsize(label)
    return {
        "source": "model_size.json (NVIDIA layout)",
        "cardinalities": cardinalities,
        "categorical_dtypes": [categorical_dtype(c).name for c in cardinalities],
        "rows": rows,
    }


def expected_files(meta: dict, split: str) -> dict[str, int]:
    rows = meta["rows"][split]
    files = {"label.bin": rows, "numerical.bin": rows * NUM_NUMERICAL * 2}
    for t, dtype in enumerate(meta["categorical_dtypes"]):
        files[f"cat_{t}.bin"] = rows * np.dtype(dtype).itemsize
    return files


def validate(root: str, meta: dict) -> list[str]:
    """Problems found (empty when every file has the size the metadata implies)."""
    problems = []
    if len(meta["cardinalities"]) != NUM_CATEGORICAL:
        problems.append(
            f"{NUM_CATEGORICAL} cardinalities expected, got {len(meta['cardinalities'])}"
        )
    for split in meta["rows"]:
        for name, size in expected_files(meta, split).items():
            path = os.path.join(root, split, name)
            if not os.path.exists(path):
                problems.append(f"{path}: missing")
            elif os.path.getsize(path) != size:
                problems.append(f"{path}: {os.path.getsize(path)} bytes, expected {size}")
    for t in range(NUM_CATEGORICAL):
        vocab = os.path.join(root, "vocab", f"cat_{t}.npy")
        if meta["source"] == "metadata.json" and os.path.exists(vocab):
            size = np.load(vocab, mmap_mode="r").shape[0]
            if size + 1 != meta["cardinalities"][t]:
                problems.append(f"{vocab}: {size} values, cardinality {meta['cardinalities'][t]}")
    return problems


def first_rows(root: str, meta: dict, split: str, rows: int) -> list[str]:
    n = min(rows, meta["rows"][split])
    directory = os.path.join(root, split)
    labels = np.fromfile(os.path.join(directory, "label.bin"), np.bool_, count=n)
    numerical = np.fromfile(
        os.path.join(directory, "numerical.bin"), np.float16, count=n * NUM_NUMERICAL
    ).reshape(n, NUM_NUMERICAL)
    cats = np.stack(
        [
            np.fromfile(os.path.join(directory, f"cat_{t}.bin"), d, count=n).astype(np.int64)
            for t, d in enumerate(meta["categorical_dtypes"])
        ],
        axis=1,
    ).reshape(n, NUM_CATEGORICAL)
    vocabs = []
    for t in range(NUM_CATEGORICAL):
        path = os.path.join(root, "vocab", f"cat_{t}.npy")
        vocabs.append(np.load(path, mmap_mode="r") if os.path.exists(path) else None)
    lines = []
    for i in range(n):
        numbers = " ".join(f"{v:.3g}" for v in numerical[i])
        ids = []
        for t, value in enumerate(cats[i]):
            vocab = vocabs[t]
            raw = f"={vocab[value - 1]:08x}" if vocab is not None and value > 0 else ""
            ids.append(f"{value}{raw}")
        lines.append(f"  [{i}] label={int(labels[i])} numerical=[{numbers}]")
        lines.append(f"      categorical (id=raw hash)=[{' '.join(ids)}]")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.inspect_dataset", description=__doc__)
    parser.add_argument("dataset_dir")
    parser.add_argument("--rows", type=int, default=5, help="rows decoded per split")
    args = parser.parse_args(argv)
    try:
        meta = load_layout(args.dataset_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"dataset {args.dataset_dir} ({meta['source']})")
    for key, value in meta.items():
        if key != "source":
            print(f"  {key}: {json.dumps(value)}")
    problems = validate(args.dataset_dir, meta)
    for split in meta["rows"]:
        if not any(p.startswith(os.path.join(args.dataset_dir, split)) for p in problems):
            print(f"{split}: {meta['rows'][split]:,} rows")
            print("\n".join(first_rows(args.dataset_dir, meta, split, args.rows)))
    if problems:
        print("INVALID:\n  " + "\n  ".join(problems))
        return 1
    print("all file sizes match the metadata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
