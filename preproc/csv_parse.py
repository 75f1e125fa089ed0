"""Parsing and validation of a block of CSV/TSV lines described by a schema.

Every line is one record: a line is split with Python's ``csv`` module when it
holds a double quote (quoted fields may contain the delimiter and ``""``), by
the delimiter otherwise (the same result, faster). A quote left open at the end
of the line is a reject: records never span lines, so input units can be cut at
any newline. Bytes are decoded as latin-1 (one character per byte), so any
encoding's bytes reach the hash unchanged.

Categorical and multi-hot values are hashed to uint32 (CRC-32 of their bytes),
the key the vocabularies are built on, as Criteo's values are 32-bit hashes;
a column with ``hash_buckets: N`` uses the CRC modulo N (at most N keys).
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.data.feature_spec import NUMERICAL_DTYPE
from preproc.numerical import transform
from preproc.user_schema import Schema

REASONS = (
    "empty_line",
    "field_count",
    "bad_label",
    "bad_numerical",
    "unclosed_quote",
    "bad_quote",
    "gzip_error",
)
REASON_CODE = {name: code for code, name in enumerate(REASONS)}
_LABELS = {"0": 0, "1": 1}
_KEY_CACHE_ENTRIES = 1 << 20  # bounds a parser's memory on columns of mostly unique values


def parsed_dtype(schema: Schema, widths: Sequence[int]) -> np.dtype:
    """Rows kept by pass 1 for pass 2: label, transformed numericals, then per table
    ``values_<t>`` (hashed values) and ``missing_<t>`` (1: no value) of ``widths[t]`` slots.

    Pass 1 writes each block at its own widths (a multi-hot table's longest kept list
    in the block); pass 2 widens them to the hotness (``widen``)."""
    fields = [("label", np.uint8), ("numerical", NUMERICAL_DTYPE, (len(schema.numerical),))]
    for t, width in enumerate(widths):
        fields += [(f"values_{t}", "<u4", (width,)), (f"missing_{t}", np.uint8, (width,))]
    return np.dtype(fields)


def block_widths(rows: np.ndarray) -> tuple[int, ...]:
    """Per table, the slots of a block of ``parsed_dtype`` rows."""
    names = [n for n in rows.dtype.names if n.startswith("values_")]
    return tuple(rows.dtype[n].shape[0] for n in names)


def widen(rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``rows`` (``parsed_dtype`` at any widths up to ``dtype``'s) at ``dtype``'s widths:
    the slots past a row's own are missing."""
    if rows.dtype == dtype:
        return rows
    wide = np.zeros(rows.size, dtype)
    for name in rows.dtype.names:
        if name.startswith(("values_", "missing_")):
            wide[name][:, : rows.dtype[name].shape[0]] = rows[name]
            if name.startswith("missing_"):
                wide[name][:, rows.dtype[name].shape[0] :] = 1
        else:
            wide[name] = rows[name]
    return wide


def hash_value(text: str) -> int:
    """uint32 key of a categorical value (``text`` is the field decoded as latin-1)."""
    return zlib.crc32(text.encode("latin-1"))


@dataclass
class CsvBlock:
    """Accepted rows of a block (``parsed_dtype``), per-table values to count, rejects.

    Attributes:
        rows: accepted rows in input order (``parsed_dtype`` at the block's widths).
        values: per table, the hashed values present in the accepted rows.
        truncated: per table, accepted rows whose list held more values than its cap.
        longest: per multi-hot table, the longest list of the accepted rows (before
            truncation; 0 for a categorical table).
        num_lines: lines of the block (accepted + rejected).
        reject_lines: 0-based line index inside the block of each reject.
    """

    rows: np.ndarray
    values: list[np.ndarray]
    truncated: np.ndarray
    longest: np.ndarray
    num_lines: int
    reject_lines: np.ndarray
    reject_codes: np.ndarray
    reject_details: list[str] = field(default_factory=list)
    reject_raw: list[bytes] = field(default_factory=list)


class RowRejectedError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def split_line(line: str, delimiter: str) -> list[str]:
    """Fields of one line; ``RowRejectedError`` for a quote left open or misplaced."""
    if '"' not in line:
        return line.split(delimiter)
    try:
        records = list(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise RowRejectedError("unclosed_quote", "a quoted field never closes") from None
        raise RowRejectedError("bad_quote", f"misplaced quote ({error})") from None
    return records[0] if records else [""]


class CsvParser:
    """Parses blocks of one schema's lines (one instance per unit)."""

    def __init__(self, schema: Schema, numerical_transform: str) -> None:
        self.schema = schema
        self.delimiter = schema.delimiter
        names = [c.name for c in schema.columns]
        self.label_at = names.index(schema.label.name)
        self.numerical_at = [names.index(c.name) for c in schema.numerical]
        self.transforms = [c.transform or numerical_transform for c in schema.numerical]
        self.tables = [(names.index(c.name), c) for c in schema.tables]
        self.keys: dict[str, int] = {}  # value -> hash_value(value), for frequent values

    def _key(self, text: str) -> int:
        key = self.keys.get(text)
        if key is None:
            if len(self.keys) >= _KEY_CACHE_ENTRIES:
                self.keys.clear()
            key = self.keys[text] = hash_value(text)
        return key

    def _row(self, fields: list[str]) -> tuple[int, list, list[list[int]], list[int]]:
        """Decodes one row: (label, numbers, per table its hashed values, per table the
        length of its list before truncation)."""
        columns = self.schema.columns
        if len(fields) != len(columns):
            raise RowRejectedError("field_count", f"{len(fields)} fields, expected {len(columns)}")
        label = _LABELS.get(fields[self.label_at].strip())
        if label is None:
            at = self.label_at
            value = f"{fields[at]!r:.40}"
            raise RowRejectedError("bad_label", f"field {at + 1} ({columns[at].name}) = {value}")
        numbers = []
        for at in self.numerical_at:
            text = fields[at].strip()
            if not text:
                numbers.append(None)
                continue
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise RowRejectedError(
                    "bad_numerical", f"field {at + 1} ({columns[at].name}) = {text!r:.40}"
                )
            numbers.append(value)
        keys, lengths = [], []
        for at, column in self.tables:
            text = fields[at]
            buckets = column.hash_buckets
            if column.role == "categorical":
                key = self._key(text) if text else None
                keys.append([] if key is None else [key % buckets if buckets else key])
                lengths.append(0)
                continue
            values = [v for v in text.split(column.separator) if v] if text else []
            lengths.append(len(values))
            cap = column.cap
            table = [self._key(v) for v in (values[:cap] if cap is not None else values)]
            keys.append([k % buckets for k in table] if buckets else table)
        return label, numbers, keys, lengths

    def parse(self, data: bytes, skip_first_line: bool = False) -> CsvBlock:
        """Parses complete lines (a missing final newline is tolerated).

        ``skip_first_line``: the block starts with the file's header, which is not a row.
        """
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if skip_first_line:
            lines = lines[1:]
        labels, numbers = [], []
        keys: list[list[int]] = [[] for _ in self.tables]  # per table, kept values in order
        kept: list[list[int]] = [[] for _ in self.tables]  # per table and row, values kept
        lengths = []  # per row, each table's list length before truncation
        reject_lines, reject_codes, details, raws = [], [], [], []
        for index, raw in enumerate(lines):
            text = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                if not text:
                    raise RowRejectedError("empty_line", "empty line")
                label, row_numbers, row_keys, row_lengths = self._row(
                    split_line(text.decode("latin-1"), self.delimiter)
                )
            except RowRejectedError as reject:
                reject_lines.append(index)
                reject_codes.append(REASON_CODE[reject.reason])
                details.append(reject.detail)
                raws.append(raw)
                continue
            labels.append(label)
            numbers.append(row_numbers)
            for t, table_keys in enumerate(row_keys):
                keys[t] += table_keys
                kept[t].append(len(table_keys))
            lengths.append(row_lengths)
        block = self._block(labels, numbers, keys, kept, len(lines))
        reject = {
            "reject_lines": np.array(reject_lines, np.int64),
            "reject_codes": np.array(reject_codes, np.uint8),
            "reject_details": details,
            "reject_raw": raws,
        }
        lengths = np.array(lengths, np.int64).reshape(len(labels), len(self.tables))
        caps = np.array([c.cap or np.iinfo(np.int64).max for _, c in self.tables], np.int64)
        return CsvBlock(
            rows=block,
            values=[np.array(k, np.uint32) for k in keys],
            truncated=(lengths > caps).sum(axis=0),
            longest=lengths.max(axis=0, initial=0),
            num_lines=len(lines),
            **reject,
        )

    def _block(self, labels, numbers, keys, kept, num_lines) -> np.ndarray:
        """The accepted rows at the block's widths (each table's longest kept list;
        one slot for a categorical table)."""
        n = len(labels)
        kept_arrays = [np.array(k, np.int64) for k in kept]
        widths = [
            1 if column.role == "categorical" else int(k.max(initial=0))
            for (_, column), k in zip(self.tables, kept_arrays, strict=True)
        ]
        rows = np.zeros(n, parsed_dtype(self.schema, widths))
        rows["label"] = labels
        number_missing = np.array([[v is None for v in r] for r in numbers], bool).reshape(
            n, len(self.numerical_at)
        )
        values = np.array(
            [[0.0 if v is None else v for v in r] for r in numbers], np.float64
        ).reshape(n, len(self.numerical_at))
        for j, name in enumerate(self.transforms):
            rows["numerical"][:, j] = transform(name, values[:, j], number_missing[:, j])
        for t, (table_keys, lengths, width) in enumerate(
            zip(keys, kept_arrays, widths, strict=True)
        ):
            present = np.arange(width) < lengths[:, None]  # row-major: the keys' order
            rows[f"values_{t}"][present] = table_keys
            rows[f"missing_{t}"] = ~present
        return rows
