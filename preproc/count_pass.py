"""Pass 1: parse and validate a unit, count its categorical values, keep its rejects
and its accepted rows (features transformed, categorical values raw) for pass 2.

The result of a unit is one ``.npz`` (its done marker): per table the sorted
unique values and counts, the line and row counts, and the rejected lines with
their line index inside the unit (absolute line numbers need the line counts
of the file's earlier units and are computed by the caller).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from preproc.csv_parse import CsvParser
from preproc.fast_parse import parse_lines
from preproc.numerical import transform
from preproc.parse import ParsedBlock
from preproc.parsed_file import write_block
from preproc.row_format import CRITEO, RowFormat
from preproc.schema import NUM_CATEGORICAL, PARSED_DTYPE, pack_missing
from preproc.units import Unit, UnitReader
from preproc.vocab import reduce_counts
from preproc.workdir import WorkDir, atomic_open

# Rows of raw values a worker holds before reducing them to (value, count) pairs.
FLUSH_ROWS = 1 << 20


@dataclass(frozen=True)
class CountTask:
    unit: Unit
    output_dir: str
    labeled: bool
    numerical_transform: str
    row_format: RowFormat = CRITEO


@dataclass
class UnitSummary:
    """What the coordinator needs of a finished pass-1 unit."""

    unit_index: int
    num_lines: int
    num_rows: int
    reject_lines: np.ndarray  # 0-based line index inside the unit
    reject_codes: np.ndarray
    rejects: list[tuple[str, bytes]]  # (detail, raw line)
    # Per table, rows whose multi-hot list was longer than its cap (schema input), and
    # the longest multi-hot list (empty items dropped, before truncation; 0 otherwise).
    truncated: np.ndarray | None = None
    longest: np.ndarray | None = None


class _ColumnCounter:
    """Running (sorted values, counts) of every table of a unit.

    Raw values are reduced every ``flush_rows`` rows, so a unit as large as a
    whole ``.gz`` day needs memory for its distinct values, not its rows.
    """

    def __init__(self, flush_rows: int = FLUSH_ROWS, num_tables: int = NUM_CATEGORICAL) -> None:
        self.flush_rows = flush_rows
        self.num_tables = num_tables
        self.pending: list[list[np.ndarray]] = [[] for _ in range(num_tables)]
        self.pending_rows = 0
        self.totals = [(np.zeros(0, np.uint32), np.zeros(0, np.int64)) for _ in range(num_tables)]

    def add(self, categorical: np.ndarray, missing: np.ndarray) -> None:
        for table in range(self.num_tables):
            self.pending[table].append(categorical[~missing[:, table], table])
        self.pending_rows += categorical.shape[0]
        if self.pending_rows >= self.flush_rows:
            self.flush()

    def add_values(self, values: list[np.ndarray], rows: int) -> None:
        """Adds the values present in ``rows`` rows, per table."""
        for table, present in enumerate(values):
            self.pending[table].append(present)
        self.pending_rows += rows
        if self.pending_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        for table, parts in enumerate(self.pending):
            if parts:
                values, counts = np.unique(np.concatenate(parts), return_counts=True)
                total_v, total_c = self.totals[table]
                self.totals[table] = reduce_counts(
                    np.concatenate([total_v, values.astype(np.uint32)]),
                    np.concatenate([total_c, counts.astype(np.int64)]),
                )
        self.pending = [[] for _ in range(self.num_tables)]
        self.pending_rows = 0


def _parsed_rows(parsed: ParsedBlock, numerical_transform: str) -> np.ndarray:
    rows = np.empty(parsed.num_rows, PARSED_DTYPE)
    rows["label"] = parsed.labels
    rows["numerical"] = transform(numerical_transform, parsed.integers, parsed.integer_missing)
    rows["categorical"] = parsed.categorical
    rows["categorical_missing"] = pack_missing(parsed.categorical_missing)
    return rows


@dataclass
class UnitResult:
    """Pass 1 of one unit: its summary and per table its (sorted values, counts)."""

    summary: UnitSummary
    counts: list[tuple[np.ndarray, np.ndarray]]


class UnitParser:
    """Parses one unit block by block: the single definition of pass 1 for both engines.

    Iterating yields the accepted rows of each block (Criteo: ``PARSED_DTYPE``: label,
    transformed numericals, raw categorical values, missing bits; a schema:
    ``csv_parse.parsed_dtype`` at the block's widths); ``result`` holds the counts,
    rejects and multi-hot list lengths once iteration has finished.
    """

    def __init__(
        self,
        unit: Unit,
        labeled: bool,
        numerical_transform: str,
        row_format: RowFormat | None = None,
    ) -> None:
        self.unit = unit
        self.labeled = labeled
        self.numerical_transform = numerical_transform
        self.row_format = row_format or RowFormat(labeled=labeled)
        self.result: UnitResult | None = None

    def _blocks(self, reader: UnitReader) -> Iterator[tuple[np.ndarray, ParsedBlock]]:
        """(accepted rows, the block's line and reject fields) per block; counts values."""
        schema = self.row_format.schema
        if schema is None:
            for block in reader:
                parsed = parse_lines(block, self.labeled)
                self.counter.add(parsed.categorical, parsed.categorical_missing)
                yield _parsed_rows(parsed, self.numerical_transform), parsed
            return
        parser = CsvParser(schema, self.numerical_transform)
        # The header is the first line of the file's first unit; it is not a row.
        skip = schema.header and self.unit.start == 0
        for block in reader:
            parsed = parser.parse(block, skip_first_line=skip)
            skip = False
            self.counter.add_values(parsed.values, parsed.rows.size)
            self.truncated += parsed.truncated
            np.maximum(self.longest, parsed.longest, out=self.longest)
            yield parsed.rows, parsed

    def __iter__(self) -> Iterator[np.ndarray]:
        self.counter = _ColumnCounter(num_tables=self.row_format.num_tables)
        self.truncated = np.zeros(self.row_format.num_tables, np.int64)
        self.longest = np.zeros(self.row_format.num_tables, np.int64)
        num_lines = num_rows = 0
        reject_lines, reject_codes, rejects = [], [], []
        reader = UnitReader(self.unit)
        for rows, parsed in self._blocks(reader):
            yield rows
            reject_lines.append(parsed.reject_lines + num_lines)
            reject_codes.append(parsed.reject_codes)
            rejects += zip(parsed.reject_details, parsed.reject_raw, strict=True)
            num_lines += parsed.num_lines
            num_rows += rows.size
        if reader.error is not None:
            message, tail = reader.error
            reject_lines.append(np.array([num_lines], np.int64))
            reject_codes.append(np.array([self.row_format.gzip_error_code], np.uint8))
            rejects.append((message, tail))
            num_lines += 1
        counter = self.counter
        counter.flush()
        summary = UnitSummary(
            unit_index=self.unit.index,
            num_lines=num_lines,
            num_rows=num_rows,
            reject_lines=np.concatenate(reject_lines or [np.zeros(0, np.int64)]),
            reject_codes=np.concatenate(reject_codes or [np.zeros(0, np.uint8)]),
            rejects=rejects,
            truncated=self.truncated,
            longest=self.longest,
        )
        self.result = UnitResult(summary, counter.totals)


def count_unit(task: CountTask) -> int:
    """Runs pass 1 on one unit; returns the unit index.

    Writes the accepted rows (``parsed_file``) for pass 2, then the counts and
    rejects file, whose presence marks the unit done.
    """
    workdir = WorkDir(task.output_dir)
    parser = UnitParser(task.unit, task.labeled, task.numerical_transform, task.row_format)
    with atomic_open(workdir.parsed(task.unit.index)) as rows_file:
        for rows in parser:
            write_block(rows_file, rows, task.row_format)
    summary, counts = parser.result.summary, parser.result.counts
    arrays = {f"values_{t}": v for t, (v, _) in enumerate(counts)}
    arrays |= {f"counts_{t}": c for t, (_, c) in enumerate(counts)}
    reject_json = json.dumps([(d, raw.decode("latin-1")) for d, raw in summary.rejects])
    with atomic_open(workdir.pass1(task.unit.index)) as f:
        np.savez(
            f,
            num_lines=np.int64(summary.num_lines),
            num_rows=np.int64(summary.num_rows),
            reject_lines=summary.reject_lines,
            reject_codes=summary.reject_codes,
            reject_json=np.frombuffer(reject_json.encode(), np.uint8),
            truncated=summary.truncated,
            longest=summary.longest,
            **arrays,
        )
    return task.unit.index


def load_summary(workdir: WorkDir, unit_index: int) -> UnitSummary:
    with np.load(workdir.pass1(unit_index)) as data:
        rejects = json.loads(data["reject_json"].tobytes().decode())
        return UnitSummary(
            unit_index=unit_index,
            num_lines=int(data["num_lines"]),
            num_rows=int(data["num_rows"]),
            reject_lines=data["reject_lines"],
            reject_codes=data["reject_codes"],
            rejects=[(d, raw.encode("latin-1")) for d, raw in rejects],
            truncated=data.get("truncated"),
            longest=data.get("longest"),
        )


def load_unit_counts(workdir: WorkDir, unit_index: int, table: int) -> tuple[np.ndarray, ...]:
    """Sorted values and counts of one table in one unit (reads only that table)."""
    with np.load(workdir.pass1(unit_index)) as data:
        return data[f"values_{table}"], data[f"counts_{table}"]
