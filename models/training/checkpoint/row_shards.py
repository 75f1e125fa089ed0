"""Tables split by rows in a checkpoint: one file per row range, restored into any ranges.

A rank holding rows ``[a, b)`` of table ``t`` writes::

    tables/table_{t}.rows_{a}-{b}.npy          those rows
    tables/table_{t}.rows_{a}-{b}.{slot}.npy   the same rows of each optimizer slot

and ``checkpoint.json`` lists the ranges under ``table_shards``
(``{"t": [{"rows": [a, b], "rank": r, "files": {...}}, ...]}``, by first
row); whole tables stay under ``tables``. Restoring, a rank copies into an
array of its own rows the overlap of every saved piece (a whole table's file
or the shards), each memory-mapped: it copies only the rows it holds, so a
table is never held in memory whole on a rank that holds part of it,
whatever the ranges at save. Pieces without any of its rows are not opened;
the checksum of the others is verified by streaming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.training.checkpoint.layout import (
    METADATA_FILE,
    CheckpointError,
    open_saved_array,
    table_files,
)

# One saved piece of a table: (first row, end row, files by "weights"/slot name).
Piece = tuple[int, int, Mapping[str, str]]


def shard_files(table: int, start: int, end: int, slots: Sequence[str]) -> dict[str, str]:
    """File names of rows ``[start, end)`` of ``table`` and of its slots."""
    whole = table_files(table, slots)
    prefix, suffix = f"tables/table_{table}", f".rows_{start}-{end}"
    return {name: path.replace(prefix, prefix + suffix, 1) for name, path in whole.items()}


def merge_shards(
    shards: Mapping[str, list[dict[str, Any]]], whole: Mapping[str, Any], cardinalities: list[int]
) -> dict[str, list[dict[str, Any]]]:
    """Checks that every split table's ranges cover its rows exactly once; sorts them.

    Args:
        shards: per table, the ranges the ranks wrote (``rows``, ``rank``, ``files``).
        whole: tables written whole (a table may not be in both).
        cardinalities: rows of every table.

    Raises:
        CheckpointError: overlapping, missing or out-of-range rows; nothing is
            written then.
    """
    merged = {}
    for table in sorted(shards, key=int):
        if table in whole:
            raise CheckpointError(
                f"table {table} was written whole and by row ranges: ranks disagree on its "
                "placement; checkpoint not written"
            )
        ranges = sorted(shards[table], key=lambda s: s["rows"][0])
        expected = 0
        for shard in ranges:
            start, end = shard["rows"]
            if start != expected:
                raise CheckpointError(
                    f"table {table}: saved row ranges {[s['rows'] for s in ranges]} do not "
                    f"cover its {cardinalities[int(table)]} rows once (at row {expected}); "
                    "checkpoint not written"
                )
            expected = end
        if expected != cardinalities[int(table)]:
            raise CheckpointError(
                f"table {table}: saved row ranges {[s['rows'] for s in ranges]} end at row "
                f"{expected}, the table has {cardinalities[int(table)]}; checkpoint not written"
            )
        merged[table] = ranges
    return merged


def saved_pieces(
    directory: Path, metadata: Mapping[str, Any], table: int, rows: int
) -> list[Piece]:
    """The pieces ``table`` was saved in, by first row (one for a whole table).

    Raises:
        CheckpointError: the table is not in the checkpoint.
    """
    files = metadata["tables"].get(str(table))
    if files is not None:
        return [(0, rows, files)]
    shards = metadata.get("table_shards", {}).get(str(table))
    if not shards:
        raise CheckpointError(f"{directory / METADATA_FILE}: no entry for table {table}")
    return [(int(s["rows"][0]), int(s["rows"][1]), s["files"]) for s in shards]


def read_rows(
    directory: Path,
    pieces: Sequence[Piece],
    name: str,
    arrays: Mapping[str, Any],
    rows: tuple[int, int],
    target: Any,
    what: str,
) -> np.ndarray:
    """Rows ``[start, end)`` of one saved array (weights or a slot), from its pieces.

    Args:
        directory: the checkpoint directory.
        pieces: :func:`saved_pieces` of the table.
        name: "weights" or a slot name.
        arrays: ``checkpoint.json``'s shape/dtype of every file.
        rows: the range to read.
        target: the variable it will be assigned to (shape ``[end - start, D]``).
        what: for messages, e.g. "table 3 slot m".

    Raises:
        CheckpointError: a piece missing, corrupt, of another width or dtype.
    """
    start, end = rows
    shape = [int(d) for d in target.shape]
    dtype = np.dtype(getattr(target.dtype, "as_numpy_dtype", target.dtype))
    if shape[0] != end - start:
        raise CheckpointError(f"{what}: rows [{start}, {end}) but the model holds {shape[0]}")
    out = np.empty(shape, dtype)
    for first, last, files in pieces:
        lo, hi = max(start, first), min(end, last)
        if lo >= hi:
            continue  # none of this piece's rows are ours: not even opened
        if name not in files:
            raise CheckpointError(f"{what}: rows [{first}, {last}) were saved without it")
        array = _open(directory, files[name], arrays, [last - first, *shape[1:]], dtype, what)
        out[lo - start : hi - start] = array[lo - first : hi - first]
    return out


def _open(
    directory: Path,
    relative: str,
    arrays: Mapping[str, Any],
    shape: list[int],
    dtype: np.dtype,
    what: str,
) -> np.ndarray:
    array = open_saved_array(directory, relative, arrays, what)
    if list(array.shape) != shape or array.dtype != dtype:
        raise CheckpointError(
            f"{what}: checkpoint piece {relative} is {array.dtype}{list(array.shape)}, "
            f"the model needs {dtype}{shape}"
        )
    return array
