"""Shared helpers: run preproc in-process, read a dataset back, a pure-Python reference."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from preproc.config import PreprocConfig
from preproc.pipeline import run
from tests.samples import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
LABELED_SAMPLES = ["kaggle_train_head.tsv", "deepctr_criteo_sample.tsv", "paddlerec_samples.tsv"]


def sample(name: str) -> str:
    return str(SAMPLES / name)


def sample_lines(name: str) -> list[bytes]:
    return (SAMPLES / name).read_bytes().split(b"\n")


def preprocess(inputs: list[str], output_dir: Path, **options) -> dict:
    hook = options.pop("hook", None)
    options.setdefault("frequency_thresholds", (2,) * 26)
    config = PreprocConfig(input_files=tuple(inputs), output_dir=str(output_dir), **options)
    run(config, hook)
    return json.loads((output_dir / "metadata.json").read_text())


def read_split(root: Path, split: str) -> dict[str, np.ndarray]:
    meta = json.loads((root / "metadata.json").read_text())
    n = meta["rows"][split]
    out = {
        "label": np.fromfile(root / split / "label.bin", np.bool_),
        "numerical": np.fromfile(root / split / "numerical.bin", np.float16).reshape(n, 13),
    }
    out["categorical"] = np.stack(
        [
            np.fromfile(root / split / f"cat_{t}.bin", meta["categorical_dtypes"][t]).astype(
                np.int64
            )
            for t in range(26)
        ],
        axis=1,
    ).reshape(n, 26)
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a dataset except the (timing-dependent) summary."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel != "preproc_summary.json":
                files[rel] = path.read_bytes()
    return files


def reference_transform(
    paths: list[str], threshold: int, transform: str = "log3"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Straightforward per-line Python: (labels, numerical fp16, ids, cardinalities)."""
    rows = []
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                fields = line.rstrip(b"\n").rstrip(b"\r").split(b"\t")
                assert len(fields) == 40, (path, fields)
                rows.append(fields)
    counters = [Counter() for _ in range(26)]
    for fields in rows:
        for t in range(26):
            if fields[14 + t]:
                counters[t][int(fields[14 + t], 16)] += 1
    vocabs = []
    for counter in counters:
        kept = sorted(
            (v for v, c in counter.items() if c >= threshold), key=lambda v: (-counter[v], v)
        )
        vocabs.append({v: i + 1 for i, v in enumerate(kept)})

    def number(field: bytes) -> float:
        if not field:
            return 0.0
        x = int(field)
        if transform == "log3":
            return math.log(x + 3) if x > -3 else 0.0
        return math.log(max(x, 0) + 1)

    labels = np.array([int(f[0]) for f in rows], np.bool_)
    numerical = np.array([[number(f[1 + j]) for j in range(13)] for f in rows], np.float64)
    numerical = numerical.astype(np.float32).astype(np.float16)
    ids = np.array(
        [
            [vocabs[t].get(int(f[14 + t], 16), 0) if f[14 + t] else 0 for t in range(26)]
            for f in rows
        ],
        np.int64,
    )
    return labels, numerical, ids, [len(v) + 1 for v in vocabs]


def rows_as_bytes(labels: np.ndarray, numerical: np.ndarray, ids: np.ndarray) -> list[bytes]:
    """One comparable key per row, for order-insensitive comparisons of shuffled splits."""
    return sorted(
        labels[i].tobytes() + numerical[i].tobytes() + ids[i].tobytes() for i in range(len(labels))
    )
