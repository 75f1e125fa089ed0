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
    root: str | Path,
    split: str,
    arrays: SplitArrays,
    dtypes: Sequence[np.dtype],
    append: bool = False,
) -> None:
    """Writes ``arrays`` as ``root/split/{label,numerical,cat_i}.bin``.

    With ``append`` the rows are added at the end of existing files, so a
    large split can be written chunk by chunk in bounded memory.
    """
    rows = len(arrays.labels)
    if arrays.numerical.ndim != 2 or arrays.numerical.shape[0] != rows:
        raise ValueError(f"numerical must be [{rows}, N], got {arrays.numerical.shape}")
    if arrays.categorical.shape != (rows, len(dtypes)):
        raise ValueError(
            f"categorical must be [{rows}, {len(dtypes)}], got {arrays.categorical.shape}"
        )
    directory = layout.split_dir(root, split)
    directory.mkdir(parents=True, exist_ok=True)
    mode = "ab" if append else "wb"
    columns = [
        (layout.LABEL_FILE, np.asarray(arrays.labels).astype(layout.LABEL_DTYPE)),
        (layout.NUMERICAL_FILE, np.ascontiguousarray(arrays.numerical, layout.NUMERICAL_DTYPE)),
    ]
    columns += [
        (layout.categorical_file(table), arrays.categorical[:, table].astype(dtype))
        for table, dtype in enumerate(dtypes)
    ]
    for name, values in columns:
        with open(directory / name, mode) as file:
            file.write(values.tobytes())


def write_metadata(
    root: str | Path,
    cardinalities: Sequence[int],
    num_numerical: int,
    rows: Mapping[str, int],
    source: str = "ours",
) -> None:
    """Writes ``model_size.json`` and, for ``source="ours"``, ``metadata.json``.

    ``source="nvidia"`` writes only ``model_size.json``, as NVIDIA's pipeline.
    """
    if source not in ("ours", "nvidia"):
        raise ValueError(f"source must be 'ours' or 'nvidia', got {source!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # NVIDIA's keys name the Criteo TSV columns of the categoricals (14..39).
    model_size = {f"_c{14 + i}": int(n) - 1 for i, n in enumerate(cardinalities)}
    (root / layout.NVIDIA_MODEL_SIZE_FILE).write_text(json.dumps(model_size, indent=1))
    if source == "nvidia":
        return
    metadata = {
        "format_version": layout.FORMAT_VERSION,
        "num_numerical_features": int(num_numerical),
        "num_categorical_features": len(cardinalities),
        "cardinalities": [int(n) for n in cardinalities],
        "categorical_dtypes": [layout.categorical_dtype(n).name for n in cardinalities],
        "rows": {split: int(n) for split, n in rows.items()},
    }
    (root / layout.METADATA_FILE).write_text(json.dumps(metadata, indent=1))


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
        source: ``"ours"`` or ``"nvidia"`` (see ``write_metadata``).
    """
    dtypes = [layout.categorical_dtype(n) for n in cardinalities]
    for split, arrays in splits.items():
        write_split(root, split, arrays, dtypes)
    num_numerical = next(iter(splits.values())).numerical.shape[1] if splits else 0
    rows = {split: len(arrays.labels) for split, arrays in splits.items()}
    write_metadata(root, cardinalities, num_numerical, rows, source)
