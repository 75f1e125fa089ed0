"""Writes arrays as a binary dataset (the format of ``models/data/feature_spec.py``).

The real datasets come from ``preproc/``; this small writer exists so that
tests and ``tools/bench/input.py`` can build datasets of known content with
numpy, in our layout or in NVIDIA's (only ``model_size.json``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from models.data import feature_spec as fs


class SplitArrays(NamedTuple):
    """Content of one split.

    Attributes:
        labels: ``[N]`` 0/1 values (any dtype convertible to bool).
        numerical: ``[N, num_numerical]`` values, stored as float16.
        categorical: ``[N, C]`` ids, stored per table in the table's dtype:
            table ``t`` is ``hotness[t]`` consecutive columns (``C = num_tables``
            when every table is single-valued), multi-hot rows padded with
            ``feature_spec.PAD_ID``.
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
    hotness: Sequence[int] | None = None,
) -> None:
    """Writes ``arrays`` as the files of ``split`` (``FeatureSpec.default``'s layout).

    With ``append`` the rows are added at the end of existing files, so a
    large split can be written chunk by chunk in bounded memory. ``hotness``:
    ids per row of each table (None: 1 each).
    """
    rows = len(arrays.labels)
    hotness = [1] * len(dtypes) if hotness is None else list(hotness)
    if arrays.numerical.ndim != 2 or arrays.numerical.shape[0] != rows:
        raise ValueError(f"numerical must be [{rows}, N], got {arrays.numerical.shape}")
    if arrays.categorical.shape != (rows, sum(hotness)):
        raise ValueError(
            f"categorical must be [{rows}, {sum(hotness)}] (hotness {hotness}), "
            f"got {arrays.categorical.shape}"
        )
    directory = fs.split_dir(root, split)
    directory.mkdir(parents=True, exist_ok=True)
    mode = "ab" if append else "wb"
    columns = fs.split_columns(arrays.numerical.shape[1], dtypes, hotness)
    values = [np.asarray(arrays.labels).astype(bool)]
    if arrays.numerical.shape[1]:
        values.append(arrays.numerical)
    starts = np.cumsum([0, *hotness])
    values += [arrays.categorical[:, a:b] for a, b in itertools.pairwise(starts)]
    for column, data in zip(columns, values, strict=True):
        with open(directory / column.file, mode) as file:
            file.write(np.ascontiguousarray(data, column.dtype).tobytes())


def write_metadata(
    root: str | Path,
    cardinalities: Sequence[int],
    num_numerical: int,
    rows: Mapping[str, int],
    source: str = "ours",
    hotness: Sequence[int] | None = None,
) -> None:
    """Writes the metadata files of ``source``'s layout.

    ``"ours"``: ``feature_spec.yaml``, ``model_size.json`` and ``metadata.json``
    (as ``preproc`` does); ``"ours_v1"``: the same without ``feature_spec.yaml``
    (datasets written before it existed); ``"nvidia"``: only ``model_size.json``,
    as NVIDIA's pipeline. Multi-hot tables (``hotness``) need ``"ours"``: only
    ``feature_spec.yaml`` records hotness.
    """
    if hotness is not None and any(h != 1 for h in hotness) and source != "ours":
        raise ValueError(f"multi-hot tables need source 'ours' (feature_spec.yaml), not {source!r}")
    if source not in ("ours", "ours_v1", "nvidia"):
        raise ValueError(f"source must be 'ours', 'ours_v1' or 'nvidia', got {source!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    spec = fs.FeatureSpec.default(num_numerical, cardinalities, rows, hotness=hotness)
    model_size = fs.model_size(cardinalities)
    (root / fs.MODEL_SIZE_FILE).write_text(json.dumps(model_size, indent=1))
    if source == "nvidia":
        return
    if source == "ours":
        fs.write_feature_spec(root, spec)
    metadata = fs.metadata_json(spec, rows)
    (root / fs.METADATA_FILE).write_text(json.dumps(metadata, indent=1))


def write_dataset(
    root: str | Path,
    splits: Mapping[str, SplitArrays],
    cardinalities: Sequence[int],
    source: str = "ours",
    hotness: Sequence[int] | None = None,
) -> None:
    """Writes a whole dataset with its metadata.

    Args:
        root: Dataset directory (created).
        splits: Arrays per split name.
        cardinalities: Rows of each table, id 0 included.
        source: ``"ours"``, ``"ours_v1"`` or ``"nvidia"`` (see ``write_metadata``).
        hotness: Ids per row of each table (None: 1 each); see :class:`SplitArrays`.
    """
    dtypes = [fs.categorical_dtype(n) for n in cardinalities]
    for split, arrays in splits.items():
        write_split(root, split, arrays, dtypes, hotness=hotness)
    num_numerical = next(iter(splits.values())).numerical.shape[1] if splits else 0
    rows = {split: len(arrays.labels) for split, arrays in splits.items()}
    write_metadata(root, cardinalities, num_numerical, rows, source, hotness)
