"""Fast path: decode a block whose lines are all well formed, in a few numpy passes.

Every tab and newline of the block is located in one vectorised scan (bytes
<= 10: any other byte in that range is invalid in every field, so finding one
where a separator should be defers the block). When each line has exactly
the expected number of fields, the separator positions reshape into an
[n, fields] table of field ends and every column is decoded from the block
in place, with the same SWAR decoders as ``parse.parse_block``; no per-field
copy of the data is made. Any irregularity (wrong field count, an empty
line, an invalid field) returns ``None`` and the caller re-parses the block
with the exact slow path, which finds the line numbers and reasons. Both
paths accept exactly the same lines.
"""

from __future__ import annotations

import numpy as np

from preproc.parse import (
    HEX_DIGITS,
    PaddedBytes,
    ParsedBlock,
    decode_hex,
    decode_integers,
    parse_block,
)
from preproc.schema import NUM_NUMERICAL, num_fields

_NEWLINE, _TAB, _CR, _ZERO = 10, 9, 13, 48


def _field_ends(raw: np.ndarray, nfields: int) -> np.ndarray | None:
    """[n, nfields] position of each field's separator, or None when a line is irregular."""
    separators = np.flatnonzero(raw <= _NEWLINE)
    if separators.size % nfields:
        return None
    ends = separators.reshape(-1, nfields)
    if np.any(raw[ends[:, :-1]] != _TAB) or np.any(raw[ends[:, -1]] != _NEWLINE):
        return None
    return ends


def _decode_categorical(
    buffer: PaddedBytes, ends: np.ndarray, lengths: np.ndarray
) -> np.ndarray | None:
    """uint32 values (0 where missing) of hex fields, or None when one is invalid.

    Full 8-digit fields (nearly all of Criteo's) are gathered as 8-byte words,
    which side by side are their hex text, and decoded by ``bytes.fromhex``;
    shorter ones by ``parse.decode_hex``.
    """
    values = np.zeros(lengths.shape, np.uint32)
    full = lengths == HEX_DIGITS
    text = buffer.words_ending_at(ends[full], HEX_DIGITS).tobytes()
    try:
        decoded = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    # fromhex skips whitespace: a whitespace character shortens the output.
    if len(decoded) != len(text) // 2:
        return None
    values[full] = np.frombuffer(decoded, ">u4")
    short = ~full & (lengths != 0)
    if short.any():
        short_values, bad = decode_hex(buffer, ends[short], lengths[short])
        if bad.any():
            return None
        values[short] = short_values
    return values


def try_parse(data: bytes, labeled: bool = True) -> ParsedBlock | None:
    """The parsed block when every line is valid, else None.

    A trailing carriage return (CRLF files) is not part of the last field, and
    a missing final newline is tolerated, as in ``parse.parse_block``.
    """
    nfields = num_fields(labeled)
    raw = np.frombuffer(data, np.uint8)
    if raw.size and raw[-1] != _NEWLINE:
        raw = np.concatenate([raw, np.array([_NEWLINE], np.uint8)])
    ends = _field_ends(raw, nfields)
    if ends is None:
        return None
    n = ends.shape[0]
    if n == 0:
        return None
    # Column-major copies: each column's decode then reads contiguous positions.
    ends = np.ascontiguousarray(ends.T)
    starts = np.empty_like(ends)
    starts[1:] = ends[:-1] + 1
    starts[0, 0] = 0
    starts[0, 1:] = ends[-1, :-1] + 1
    last = ends[-1]
    has_cr = (last > starts[-1]) & (raw[np.maximum(last - 1, 0)] == _CR)
    last -= has_cr
    lengths = ends - starts
    buffer = PaddedBytes(raw)
    if labeled:
        label_char = raw[starts[0]] - np.uint8(_ZERO)
        if np.any(lengths[0] != 1) or np.any(label_char > 1):
            return None
        labels = label_char
    else:
        labels = np.zeros(n, np.uint8)
    first = 1 if labeled else 0
    ints = slice(first, first + NUM_NUMERICAL)
    cats = slice(first + NUM_NUMERICAL, nfields)
    integers = np.empty((NUM_NUMERICAL, n), np.int64)
    for j in range(NUM_NUMERICAL):
        # Per column: one long value elsewhere does not widen every column's decode.
        integers[j], bad = decode_integers(buffer, ends[first + j], lengths[first + j])
        if bad.any():
            return None
    categorical = _decode_categorical(buffer, ends[cats], lengths[cats])
    if categorical is None:
        return None
    return ParsedBlock(
        # Column-major [n, k] views (no transposing copy): consumers read per column.
        labels=np.ascontiguousarray(labels, np.uint8),
        integers=integers.T,
        integer_missing=(lengths[ints] == 0).T,
        categorical=categorical.T,
        categorical_missing=(lengths[cats] == 0).T,
        num_lines=n,
        reject_lines=np.zeros(0, np.int64),
        reject_codes=np.zeros(0, np.uint8),
    )


def parse_lines(data: bytes, labeled: bool = True) -> ParsedBlock:
    """Fast path when the block is clean, else the exact line-by-line-reporting parser."""
    parsed = try_parse(data, labeled)
    return parsed if parsed is not None else parse_block(data, labeled)
