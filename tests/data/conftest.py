"""Tiny binary datasets of known content, written with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.writer import SplitArrays, write_dataset

# Covers every on-disk dtype and the boundaries of the rule: 126 rows fit
# int8 (max 127 > 126), 127 rows do not; 32767 rows need int32.
CARDINALITIES = (5, 126, 127, 300, 32767, 70000)
NUM_NUMERICAL = 3
SPLIT_ROWS = {"train": 23, "test": 10, "validation": 7}


def random_split(rng: np.random.Generator, rows: int, cardinalities=CARDINALITIES) -> SplitArrays:
    """Arrays whose every value is distinct enough to catch a misplaced row."""
    labels = rng.integers(0, 2, rows).astype(bool)
    # Multiples of 1/8 are exact in float16, so the round trip is exact.
    numerical = rng.integers(-800, 800, (rows, NUM_NUMERICAL)).astype(np.float32) / 8
    categorical = np.stack([rng.integers(0, n, rows) for n in cardinalities], axis=1)
    return SplitArrays(labels, numerical, categorical)


@pytest.fixture
def dataset_factory(tmp_path: Path):
    """Returns ``make(source="ours", split_rows=SPLIT_ROWS) -> (root, {split: SplitArrays})``."""

    def make(source: str = "ours", split_rows=None, name: str = "dataset"):
        rng = np.random.default_rng(1234)
        splits = {
            split: random_split(rng, rows) for split, rows in (split_rows or SPLIT_ROWS).items()
        }
        root = tmp_path / name
        write_dataset(root, splits, CARDINALITIES, source=source)
        return root, splits

    return make
