"""Pass 2: map a unit's accepted rows to ids and write them per split.

Reads the rows pass 1 kept (``parsed_file``) in chunks and writes
packed records (``schema.record_dtype``) per split, streaming, so memory does
not depend on the unit's size (a whole ``.gz`` day is one unit). Training rows
of a shuffled run are cut into segments of at most ``SEGMENT_ROWS``; in each,
every row draws a bucket from a generator seeded by (seed, unit index) and the
segment is stored sorted by bucket, its per-bucket row counts beside it. The
assembly step then gathers each bucket from every segment of every unit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from preproc.parsed_file import block_rows, read_blocks
from preproc.row_format import CRITEO, RowFormat
from preproc.schema import unpack_missing
from preproc.vocab import VocabLookup
from preproc.vocab_pass import load_lookup
from preproc.workdir import WorkDir, atomic_open, save_json, save_npy

UNIT_SEED_STREAM = 0  # second word of the seed of a unit's bucket assignment
CHUNK_ROWS = 1 << 18  # rows mapped at once
SEGMENT_ROWS = 1 << 19  # training rows shuffled into buckets at once (bounds memory)


@dataclass(frozen=True)
class TransformTask:
    """Pass 2 of one unit.

    Attributes:
        ranges: (split, first row, end row) over the unit's accepted rows.
        num_buckets: shuffle buckets of the training rows; 0 keeps input order.
    """

    unit_index: int
    output_dir: str
    cat_dtypes: tuple[str, ...]
    ranges: tuple[tuple[str, int, int], ...]
    expected_rows: int
    num_buckets: int
    seed: int
    row_format: RowFormat = CRITEO


_LOOKUPS: dict[str, list[VocabLookup]] = {}


def _lookups(workdir: WorkDir, num_tables: int) -> list[VocabLookup]:
    """Per-process cache: a worker loads each table once, not once per unit."""
    if workdir.root not in _LOOKUPS:
        _LOOKUPS.clear()
        _LOOKUPS[workdir.root] = [VocabLookup(*load_lookup(workdir, t)) for t in range(num_tables)]
    return _LOOKUPS[workdir.root]


def to_records(rows: np.ndarray, tables: list[VocabLookup], dtype: np.dtype) -> np.ndarray:
    """Packed records (``schema.record_dtype``) of accepted rows (``PARSED_DTYPE``)."""
    records = np.empty(rows.size, dtype)
    records["label"] = rows["label"]
    records["numerical"] = rows["numerical"]
    # Table-major copies: each lookup then reads one contiguous column.
    missing = np.ascontiguousarray(unpack_missing(rows["categorical_missing"]).T)
    values = np.ascontiguousarray(rows["categorical"].T)
    for t, table in enumerate(tables):
        records[f"cat_{t}"] = table(values[t], missing[t])
    return records


class SegmentShuffler:
    """Cuts a unit's training records into segments, each sorted by a random bucket per row."""

    def __init__(self, num_buckets: int, seed: int, unit_index: int) -> None:
        self.num_buckets = num_buckets
        self.rng = np.random.default_rng([seed, UNIT_SEED_STREAM, unit_index])
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0

    def add(self, records: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields the segments completed by ``records``: (bucket-sorted rows, bucket counts)."""
        self.pending.append(records)
        self.pending_rows += records.size
        if self.pending_rows >= SEGMENT_ROWS:
            yield self._flush()

    def finish(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.pending:
            yield self._flush()

    def _flush(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate(self.pending)
        buckets = self.rng.integers(0, self.num_buckets, size=rows.size)
        # A stable sort of 16-bit keys is a radix sort: same order, several times faster.
        keys = buckets.astype(np.uint16) if self.num_buckets <= 1 << 16 else buckets
        self.pending, self.pending_rows = [], 0
        return rows[np.argsort(keys, kind="stable")], np.bincount(
            buckets, minlength=self.num_buckets
        )


def unit_outputs(
    read_rows: Callable[[int, int], np.ndarray],
    ranges: tuple[tuple[str, int, int], ...],
    tables: list[VocabLookup],
    dtype: np.dtype,
    num_buckets: int,
    seed: int,
    unit_index: int,
    row_format: RowFormat | None = None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """Pass 2 of one unit, shared by both engines: ``(split, records, bucket_counts)``.

    ``read_rows(start, end)`` returns the unit's accepted rows [start, end); it is
    called with increasing, contiguous ranges. Records of an unshuffled split come
    in input order with ``bucket_counts`` None; the shuffled training rows come as
    bucket-sorted segments with their per-bucket row counts. ``row_format``: Criteo's
    by default.
    """
    convert = to_records if row_format is None or row_format.is_criteo else row_format.to_records
    for split, lo, hi in ranges:
        shuffler = (
            SegmentShuffler(num_buckets, seed, unit_index)
            if split == "train" and num_buckets > 0
            else None
        )
        for start in range(lo, hi, CHUNK_ROWS):
            records = convert(read_rows(start, min(hi, start + CHUNK_ROWS)), tables, dtype)
            if shuffler is None:
                yield split, records, None
            else:
                for rows, counts in shuffler.add(records):
                    yield split, rows, counts
        if shuffler is not None:
            for rows, counts in shuffler.finish():
                yield split, rows, counts


def _write_unit(
    task: TransformTask, workdir: WorkDir, read_rows: Callable[[int, int], np.ndarray]
) -> None:
    dtype = task.row_format.record_dtype([np.dtype(d) for d in task.cat_dtypes])
    splits = [split for split, _, _ in task.ranges]
    with ExitStack() as stack:
        files = {
            split: stack.enter_context(atomic_open(workdir.pass2(task.unit_index, f"{split}.rec")))
            for split in splits
        }
        segment_counts = []
        for split, records, counts in unit_outputs(
            read_rows,
            task.ranges,
            _lookups(workdir, task.row_format.num_tables),
            dtype,
            task.num_buckets,
            task.seed,
            task.unit_index,
            task.row_format,
        ):
            files[split].write(records)
            if counts is not None:
                segment_counts.append(counts)
        if "train" in splits and task.num_buckets > 0:
            save_npy(
                workdir.pass2(task.unit_index, "train.buckets.npy"),
                np.array(segment_counts, np.int64).reshape(-1, task.num_buckets),
            )


class RowStream:
    """``read_rows(start, end)`` over a unit's parsed-row blocks, read in order."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self.blocks = blocks
        self.position = 0
        self.buffer: list[np.ndarray] = []
        self.buffered = 0

    def __call__(self, start: int, end: int) -> np.ndarray:
        if start != self.position:
            raise RuntimeError(f"rows read out of order: {start} after {self.position}")
        while self.buffered < end - start:
            block = next(self.blocks)  # StopIteration here would mean a lost block
            self.buffer.append(block)
            self.buffered += block.size
        rows = np.concatenate(self.buffer) if len(self.buffer) > 1 else self.buffer[0]
        taken, rest = rows[: end - start], rows[end - start :]
        self.buffer, self.buffered = ([rest] if rest.size else []), rest.size
        self.position = end
        return taken


def _parsed_rows(task: TransformTask, path: str) -> Callable[[int, int], np.ndarray] | None:
    """``read_rows`` over the unit's parsed file, after checking it holds the rows
    pass 1 counted; None for a unit without rows."""
    row_format = task.row_format
    if row_format.is_criteo:
        size, itemsize = os.path.getsize(path), row_format.parsed_dtype.itemsize
        if size != task.expected_rows * itemsize:
            raise RuntimeError(
                f"{path}: {size} bytes, expected {task.expected_rows} rows of {itemsize} bytes"
            )
        parsed = np.memmap(path, row_format.parsed_dtype, mode="r") if size else None
        return lambda start, end: parsed[start:end]
    rows = block_rows(path, row_format)
    if rows != task.expected_rows:
        raise RuntimeError(f"{path}: {rows} rows, expected {task.expected_rows}")
    return RowStream(row_format.widen(b) for b in read_blocks(path, row_format))


def transform_unit(task: TransformTask) -> int:
    """Writes ``unit_K.<split>.rec`` files (and bucket counts), then the done marker,
    then deletes the unit's pass-1 rows."""
    workdir = WorkDir(task.output_dir)
    parsed_path = workdir.parsed(task.unit_index)
    _write_unit(task, workdir, _parsed_rows(task, parsed_path))
    written = {split: hi - lo for split, lo, hi in task.ranges}
    save_json(workdir.pass2(task.unit_index, "done.json"), written)
    os.remove(parsed_path)  # after the done marker: a rerun never needs it again
    return task.unit_index


def is_done(workdir: WorkDir, unit_index: int) -> bool:
    return os.path.exists(workdir.pass2(unit_index, "done.json"))
