"""Fast path: tokenise a block with pyarrow's CSV reader, decode the fields here.

pyarrow splits lines and fields in C++ (all columns read as raw bytes, so its
lenient number parsing, which accepts " 3" or "0x10", is never used). The
fields are then validated and decoded exactly as ``parse.parse_block`` does;
8-digit hex columns go through ``bytes.fromhex``. Any irregularity (a line
with the wrong field count, an invalid field, a count mismatch) returns
``None`` and the caller re-parses the block with the exact slow path, which
finds the line numbers and reasons. Both paths accept exactly the same lines.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyarrow import csv

from preproc.parse import (
    HEX_DIGITS,
    PaddedBytes,
    ParsedBlock,
    decode_hex,
    decode_integers,
    parse_block,
)
from preproc.schema import NUM_CATEGORICAL, NUM_NUMERICAL, num_fields

_READ_BLOCK_MIN = 1 << 20


class _IrregularBlockError(Exception):
    """The block needs the exact slow path."""


def _read(data: bytes, labeled: bool) -> pa.Table:
    names = [f"f{i}" for i in range(num_fields(labeled))]
    # A row with another field count raises ArrowInvalid (the caller's exact path).
    # No invalid_row_handler: pyarrow decodes the row as UTF-8 before calling it,
    # which raises inside pyarrow for non-UTF-8 bytes.
    return csv.read_csv(
        pa.py_buffer(data),
        read_options=csv.ReadOptions(
            column_names=names,
            use_threads=False,  # one core per worker; parallelism comes from the pool
            block_size=max(_READ_BLOCK_MIN, len(data) + 1),
        ),
        parse_options=csv.ParseOptions(
            delimiter="\t",
            quote_char=False,
            escape_char=False,
            double_quote=False,
            ignore_empty_lines=False,
        ),
        convert_options=csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.binary()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
        ),
    )


def _column(table: pa.Table, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(data bytes, offsets int64) of a binary column."""
    array = table.column(index).combine_chunks()
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, len(array) + 1, array.offset * 4)
    data = (
        np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    )
    return data, offsets.astype(np.int64)


def _hex_column(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.diff(offsets)
    present = lengths > 0
    values = np.zeros(lengths.size, np.uint32)
    if np.all(lengths[present] == HEX_DIGITS):
        text = data[offsets[0] : offsets[-1]].tobytes()
        try:
            decoded = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise _IrregularBlockError from None
        # fromhex skips whitespace: a whitespace character shortens the output.
        if len(decoded) != 4 * int(present.sum()):
            raise _IrregularBlockError
        values[present] = np.frombuffer(decoded, ">u4")
        return values, ~present
    values, bad = decode_hex(PaddedBytes(data), offsets[1:], lengths)
    if bad.any():
        raise _IrregularBlockError
    return values, ~present


def try_parse(data: bytes, labeled: bool = True) -> ParsedBlock | None:
    """The parsed block when every line is valid, else None."""
    nlines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    try:
        table = _read(data, labeled)
        if table.num_rows != nlines:
            raise _IrregularBlockError
        n = table.num_rows
        if labeled:
            label_data, label_offsets = _column(table, 0)
            if np.any(np.diff(label_offsets) != 1):
                raise _IrregularBlockError
            labels = label_data[label_offsets[0] : label_offsets[0] + n] - np.uint8(48)
            if np.any(labels > 1):
                raise _IrregularBlockError
        else:
            labels = np.zeros(n, np.uint8)
        first = 1 if labeled else 0
        integers = np.empty((n, NUM_NUMERICAL), np.int64)
        integer_missing = np.empty((n, NUM_NUMERICAL), bool)
        for j in range(NUM_NUMERICAL):
            data_j, offsets = _column(table, first + j)
            lengths = np.diff(offsets)
            values, bad = decode_integers(PaddedBytes(data_j), offsets[1:], lengths)
            if bad.any():
                raise _IrregularBlockError
            integers[:, j] = values
            integer_missing[:, j] = lengths == 0
        categorical = np.empty((n, NUM_CATEGORICAL), np.uint32)
        categorical_missing = np.empty((n, NUM_CATEGORICAL), bool)
        for t in range(NUM_CATEGORICAL):
            categorical[:, t], categorical_missing[:, t] = _hex_column(
                *_column(table, first + NUM_NUMERICAL + t)
            )
    except (_IrregularBlockError, pa.ArrowInvalid):
        return None
    return ParsedBlock(
        labels=np.ascontiguousarray(labels, np.uint8),
        integers=integers,
        integer_missing=integer_missing,
        categorical=categorical,
        categorical_missing=categorical_missing,
        num_lines=nlines,
        reject_lines=np.zeros(0, np.int64),
        reject_codes=np.zeros(0, np.uint8),
    )


def parse_lines(data: bytes, labeled: bool = True) -> ParsedBlock:
    """Fast path when the block is clean, else the exact line-by-line-reporting parser."""
    parsed = try_parse(data, labeled)
    return parsed if parsed is not None else parse_block(data, labeled)
