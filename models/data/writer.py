"""Writes arrays as a binary dataset (format version 1).

The real datasets come from ``preproc/``; this small writer exists so that
tests and ``tools/bench_input.py`` can build datasets of known content with
numpy, in our layout or in NVIDIA's (only ``model_size.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from models.data import layout


class SplitArrays(NamedTuple):
    """Content of one split.

    Attributes:
        labels: ``[N]`` 0/1 values (any dtype convertible to bool).
        numerical: ``[N, num_numerical]`` values, stored as float16.
        categorical: ``[N, num_tables]`` ids, stored per table in the table's dtype.
    """

    labels: np.ndarray
    numerical: np.ndarray
    categorical: np.ndarray


def write_split(
    root: str | Path, split: str, arrays: SplitArrays, dtypes: Sequence[np.dtype]
) -> None:
    """Writes ``arrays`` as ``root/split/{label,numerical,cat_i}.bin``."""
    rows = len(arrays.labels)
    if arrays.numerical.ndim != 2 or arrays.numerical.shape[0] != rows:
        raise ValueError(f"numerical must be [{rows}, N], got {arrays.numerical.shape}")
    if arrays.categorical.shape != (rows, len(dtypes)):
        raise ValueError(
            f"categorical must be [{rows}, {len(dtypes)}], got {arrays.categorical.shape}"
        )
    directory = layout.split_dir(root, split)
    directory.mkdir(parents=True, exist_ok=True)
    np.asarray(arrays.labels).astype(layout.LABEL_DTYPE).tofile(directory / layout.LABEL_FILE)
    np.ascontiguousarray(arrays.numerical, dtype=layout.NUMERICAL_DTYPE).tofile(
        directory / layout.NUMERICAL_FILE
    )
    for table, dtype in enumerate(dtypes):
        column = np.ascontiguousarray(arrays.categorical[:, table])
        column.astype(dtype).tofile(directory / layout.categorical_file(table))


def write_dataset(
    root: str | Path,
    splits: Mapping[str, SplitArrays],
    cardinalities: Sequence[int],
    source: str = "ours",
) -> None:
    """Writes a whole dataset with its metadata.

    Args:
        root: Dataset directory (created).
        splits: Arrays per split name.
        cardinalities: Rows of each table, id 0 included.
        source: ``"ours"`` writes ``metadata.json`` and ``model_size.json``;
            ``"nvidia"`` writes only ``model_size.json``, as NVIDIA's pipeline.
    """
    if source not in ("ours", "nvidia"):
        raise ValueError(f"source must be 'ours' or 'nvidia', got {source!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dtypes = [layout.categorical_dtype(rows) for rows in cardinalities]
    num_numerical = 0
    for split, arrays in splits.items():
        write_split(root, split, arrays, dtypes)
        num_numerical = arrays.numerical.shape[1]
    # NVIDIA's keys name the Criteo TSV columns of the categoricals (14..39).
    model_size = {f"_c{14 + i}": int(rows) - 1 for i, rows in enumerate(cardinalities)}
    (root / layout.NVIDIA_MODEL_SIZE_FILE).write_text(json.dumps(model_size, indent=1))
    if source == "nvidia":
        return
    metadata = {
        "format_version": layout.FORMAT_VERSION,
        "num_numerical_features": num_numerical,
        "num_categorical_features": len(cardinalities),
        "cardinalities": [int(rows) for rows in cardinalities],
        "categorical_dtypes": [dtype.name for dtype in dtypes],
        "rows": {split: len(arrays.labels) for split, arrays in splits.items()},
    }
    (root / layout.METADATA_FILE).write_text(json.dumps(metadata, indent=1))
