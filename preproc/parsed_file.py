"""A unit's accepted rows between the passes: ``_work/pass1/unit_K.parsed``.

Criteo's rows have one fixed dtype (``schema.PARSED_DTYPE``): the file is the
rows back to back, and pass 2 maps it. A schema's blocks each have their own
widths (a multi-hot table is as wide as the block's longest kept list, since
the hotness is known only once every unit is counted), so each block is framed
by a header: its row count, then its width per table, as little-endian int64.
Pass 2 reads the blocks in order and widens them (``RowFormat.widen``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from preproc.csv_parse import block_widths, parsed_dtype
from preproc.row_format import RowFormat

_HEADER_DTYPE = np.dtype("<i8")


def write_block(f: BinaryIO, rows: np.ndarray, row_format: RowFormat) -> None:
    """Appends one block of pass-1 rows (``UnitParser`` output) to an open parsed file."""
    if row_format.schema is not None:
        header = np.array([rows.size, *block_widths(rows)], _HEADER_DTYPE)
        f.write(header.tobytes())
    f.write(rows)


def _frames(f: BinaryIO, path: str, row_format: RowFormat) -> Iterator[tuple[int, np.dtype]]:
    """(rows, dtype) of each block of a schema's parsed file, ``f`` left at its rows."""
    if row_format.schema is None:
        raise ValueError("a Criteo parsed file is one array: map it with parsed_dtype")
    header_bytes = (1 + row_format.num_tables) * _HEADER_DTYPE.itemsize
    size, offset = os.path.getsize(path), 0
    while offset < size:
        f.seek(offset)
        header = np.frombuffer(f.read(header_bytes), _HEADER_DTYPE)
        if header.size != 1 + row_format.num_tables:
            raise RuntimeError(f"{path}: the block header at byte {offset} is cut")
        rows, dtype = int(header[0]), parsed_dtype(row_format.schema, header[1:].tolist())
        offset += header_bytes + rows * dtype.itemsize
        if offset > size:
            raise RuntimeError(f"{path}: {size} bytes, its last block ends at byte {offset}")
        yield rows, dtype


def read_blocks(path: str, row_format: RowFormat) -> Iterator[np.ndarray]:
    """The blocks of a schema's parsed file, in order, each at its own widths."""
    with open(path, "rb") as f:
        for rows, dtype in _frames(f, path, row_format):
            yield np.frombuffer(f.read(rows * dtype.itemsize), dtype)


def block_rows(path: str, row_format: RowFormat) -> int:
    """Rows of a schema's parsed file, from its block headers (checks they frame it)."""
    with open(path, "rb") as f:
        return sum(rows for rows, _ in _frames(f, path, row_format))
