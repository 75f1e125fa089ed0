"""Vectorised parsing and validation of a block of Criteo TSV lines.

A block is a run of complete lines. Every line is either accepted (its fields
decoded into arrays) or rejected with a reason; nothing in the fast path loops
over rows in Python. Each field is decoded from the 8-byte words that end at
its last byte (right-aligned), validated and converted with byte-parallel
integer arithmetic on those words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from preproc.schema import NUM_CATEGORICAL, NUM_NUMERICAL, REASON_CODE, num_fields

# Longest integer field accepted: 18 characters always fit int64.
MAX_INTEGER_CHARS = 18
HEX_DIGITS = 8
_PAD = 24  # widest integer window: three 8-byte words

_NEWLINE, _TAB, _CR, _MINUS, _ZERO = 10, 9, 13, 45, 48
_ONES = np.uint64(0x0101010101010101)


@dataclass
class ParsedBlock:
    """Decoded accepted rows of a block and the rejected lines.

    Attributes:
        labels: uint8 [n], 0 or 1 (0 for unlabeled input).
        integers: int64 [n, 13]; 0 where missing.
        integer_missing: bool [n, 13].
        categorical: uint32 [n, 26] hash values; 0 where missing.
        categorical_missing: bool [n, 26].
        num_lines: lines in the block (accepted + rejected).
        reject_lines: int64 [r], 0-based line index of each rejected line in the block.
        reject_codes: uint8 [r], index into ``schema.REASONS``.
        reject_details: one human-readable explanation per rejected line.
        reject_raw: the rejected lines as read, without the newline.
    """

    labels: np.ndarray
    integers: np.ndarray
    integer_missing: np.ndarray
    categorical: np.ndarray
    categorical_missing: np.ndarray
    num_lines: int
    reject_lines: np.ndarray
    reject_codes: np.ndarray
    reject_details: list[str] = field(default_factory=list)
    reject_raw: list[bytes] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])


def _field_names(labeled: bool) -> list[str]:
    names = ["label"] if labeled else []
    names += [f"I{i + 1}" for i in range(NUM_NUMERICAL)]
    names += [f"C{i + 1}" for i in range(NUM_CATEGORICAL)]
    return names


# Byte-parallel ("SWAR") helpers: a field's last 8 bytes are one little-endian
# uint64 whose lowest byte is the first of the 8 characters.
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_HIGH = np.uint64(0x8080808080808080)
_LOW_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)


def _ones(byte: int) -> np.uint64:
    return np.uint64(byte * 0x0101010101010101)


def _bytes_in_range(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """High bit of each byte set iff lo <= byte <= hi (bytes below 0x80; no carries)."""
    at_least_lo = x + _ones(0x80 - lo)
    above_hi = x + _ones(0x7F - hi)
    return at_least_lo & ~above_hi & _HIGH


def _tail_mask(skip: np.ndarray) -> np.ndarray:
    """Bytes [skip, 8) of each word set; ``skip`` in 0..8 (8: none)."""
    skip = np.clip(skip, 0, 8).astype(np.uint64)
    return np.where(skip >= 8, np.uint64(0), _ALL << (np.uint64(8) * np.minimum(skip, 7)))


class PaddedBytes:
    """A byte buffer with zero padding on both sides, also viewed as overlapping
    little-endian uint64 words (one starting at every byte), so the word ending
    at any field end can be gathered even for fields at the buffer's edges."""

    def __init__(self, raw: np.ndarray) -> None:
        pad = np.zeros(_PAD, np.uint8)
        self.padded = np.concatenate([pad, raw, pad])
        self.words = np.ndarray(
            (self.padded.size - 7,), dtype="<u8", buffer=self.padded, strides=(1,)
        )

    def byte_at(self, positions: np.ndarray) -> np.ndarray:
        return self.padded[positions + _PAD]

    def words_ending_at(self, ends: np.ndarray, offset: int) -> np.ndarray:
        """The 8 bytes [end - offset, end - offset + 8) of each field as a uint64."""
        return self.words[ends + (_PAD - offset)]


def _pack_decimal8(digits: np.ndarray) -> np.ndarray:
    """Value of 8 right-aligned decimal digit bytes (0..9 each, first digit lowest byte):
    adjacent digits, then pairs, then quads are combined inside the word."""
    x = (digits * np.uint64(10) + (digits >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    x = (x * np.uint64(100) + (x >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return (x * np.uint64(10000) + (x >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


def decode_integers(
    buffer: PaddedBytes, ends: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Optional '-' then decimal digits. Returns (values int64, bad bool)."""
    longest = int(min(lengths.max(initial=0), MAX_INTEGER_CHARS))
    width = 8 * max(1, -(-longest // 8))
    first_char = buffer.byte_at(ends - lengths)
    negative = (lengths > 0) & (first_char == _MINUS)
    bad = (lengths > MAX_INTEGER_CHARS) | (negative & (lengths == 1))
    first_digit = width - np.minimum(lengths, width) + negative  # position in the window
    values = np.zeros(lengths.shape, np.uint64)
    for group in range(0, width, 8):
        x = buffer.words_ending_at(ends, width - group)
        mask = _tail_mask(first_digit - group)
        non_digit = ~_bytes_in_range(x, 0x30, 0x39) & _HIGH & mask
        bad |= non_digit != 0
        values = values * np.uint64(10**8) + _pack_decimal8(x & _LOW_NIBBLES & mask)
    values = values.astype(np.int64)
    return np.where(negative, -values, values), bad


def decode_hex(
    buffer: PaddedBytes, ends: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """1 to 8 hex digits (either case). Returns (values uint32, bad bool)."""
    x = buffer.words_ending_at(ends, HEX_DIGITS)
    mask = _tail_mask(HEX_DIGITS - np.minimum(lengths, HEX_DIGITS))
    ascii_ = ~x & _HIGH  # the range tests need bytes below 0x80
    valid = (_bytes_in_range(x, 0x30, 0x39) | _bytes_in_range(x | _ones(0x20), 0x61, 0x66)) & ascii_
    bad = (lengths > HEX_DIGITS) | ((~valid & _HIGH & mask) != 0)
    # '0'-'9' -> low nibble; letters have bit 6 set and low nibble 1..6 -> +9.
    nibbles = ((x & _LOW_NIBBLES) + np.uint64(9) * ((x >> np.uint64(6)) & _ones(1))) & mask
    pairs = ((nibbles << np.uint64(4)) | (nibbles >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    quads = ((pairs << np.uint64(8)) | (pairs >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    values = ((quads & np.uint64(0xFFFF)) << np.uint64(16)) | (quads >> np.uint64(32))
    return values.astype(np.uint32), bad


def parse_block(data: bytes, labeled: bool = True) -> ParsedBlock:
    """Parses complete TSV lines; a missing final newline is tolerated.

    A trailing carriage return (CRLF files) is not part of the last field.
    """
    nfields = num_fields(labeled)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size and raw[-1] != _NEWLINE:
        raw = np.concatenate([raw, np.array([_NEWLINE], np.uint8)])
    newlines = np.flatnonzero(raw == _NEWLINE)
    nlines = newlines.size
    starts = np.empty(nlines, np.int64)
    if nlines:
        starts[0] = 0
        starts[1:] = newlines[:-1] + 1
    ends = newlines.astype(np.int64)
    has_cr = (ends > starts) & (raw[np.maximum(ends - 1, 0)] == _CR)
    ends -= has_cr

    tabs = np.flatnonzero(raw == _TAB)
    # Tabs before each line end; searching the few newlines among the many tabs is cheap.
    tabs_before_end = np.searchsorted(tabs, newlines)
    first_tab = np.empty(nlines, np.int64)
    first_tab[:1] = 0
    first_tab[1:] = tabs_before_end[:-1]
    ntabs = tabs_before_end - first_tab
    code = np.full(nlines, -1, np.int16)
    empty = ends == starts
    code[empty] = REASON_CODE["empty_line"]
    shaped = ~empty & (ntabs == nfields - 1)
    code[~empty & ~shaped] = REASON_CODE["field_count"]

    rows = np.flatnonzero(shaped)
    tab_pos = tabs[first_tab[rows][:, None] + np.arange(nfields - 1)]
    field_start = np.empty((rows.size, nfields), np.int64)
    field_start[:, 0] = starts[rows]
    field_start[:, 1:] = tab_pos + 1
    field_end = np.empty_like(field_start)
    field_end[:, :-1] = tab_pos
    field_end[:, -1] = ends[rows]
    lengths = field_end - field_start

    buffer = PaddedBytes(raw)
    bad = np.zeros((rows.size, nfields), bool)
    offset = 1 if labeled else 0
    if labeled:
        label_char = raw[field_start[:, 0]] if rows.size else np.zeros(0, np.uint8)
        bad[:, 0] = (lengths[:, 0] != 1) | ((label_char != _ZERO) & (label_char != _ZERO + 1))
        labels = (label_char == _ZERO + 1).astype(np.uint8)
    else:
        labels = np.zeros(rows.size, np.uint8)
    ints = slice(offset, offset + NUM_NUMERICAL)
    cats = slice(offset + NUM_NUMERICAL, nfields)
    integers, bad[:, ints] = decode_integers(buffer, field_end[:, ints], lengths[:, ints])
    categorical, bad[:, cats] = decode_hex(buffer, field_end[:, cats], lengths[:, cats])

    row_bad = bad.any(axis=1)
    first_bad = np.argmax(bad, axis=1)
    bad_rows = rows[row_bad]
    first_bad = first_bad[row_bad]
    code[bad_rows] = np.where(
        labeled & (first_bad == 0),
        REASON_CODE["bad_label"],
        np.where(
            first_bad < cats.start, REASON_CODE["bad_integer"], REASON_CODE["bad_categorical"]
        ),
    )
    good = ~row_bad
    integer_missing = lengths[good][:, ints] == 0
    categorical_missing = lengths[good][:, cats] == 0

    reject_lines = np.flatnonzero(code >= 0)
    names = _field_names(labeled)
    bad_field = dict(zip(bad_rows.tolist(), first_bad.tolist(), strict=True))
    details, raw_lines = [], []
    for line in reject_lines.tolist():
        text = bytes(raw[starts[line] : newlines[line]])
        raw_lines.append(text)
        if empty[line]:
            details.append("empty line")
        elif not shaped[line]:
            details.append(f"{ntabs[line] + 1} fields, expected {nfields}")
        else:
            col = bad_field[line]
            value = text[:-1] if text.endswith(b"\r") else text
            value = value.split(b"\t")[col]
            details.append(f"field {col + 1} ({names[col]}) = {value[:40]!r}")
    return ParsedBlock(
        labels=labels[good],
        integers=integers[good],
        integer_missing=integer_missing,
        categorical=categorical[good],
        categorical_missing=categorical_missing,
        num_lines=nlines,
        reject_lines=reject_lines.astype(np.int64),
        reject_codes=code[reject_lines].astype(np.uint8),
        reject_details=details,
        reject_raw=raw_lines,
    )
