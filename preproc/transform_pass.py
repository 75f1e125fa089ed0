"""Pass 2: map a unit's accepted rows to ids and write them per split.

Reads the rows pass 1 kept (``schema.PARSED_DTYPE``) in chunks and writes
packed records (``schema.record_dtype``) per split, streaming, so memory does
not depend on the unit's size (a whole ``.gz`` day is one unit). Training rows
of a shuffled run are cut into segments of at most ``SEGMENT_ROWS``; in each,
every row draws a bucket from a generator seeded by (seed, unit index) and the
segment is stored sorted by bucket, its per-bucket row counts beside it. The
assembly step then gathers each bucket from every segment of every unit.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from preproc.schema import NUM_CATEGORICAL, PARSED_DTYPE, record_dtype, unpack_missing
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


_LOOKUPS: dict[str, list[VocabLookup]] = {}


def _lookups(workdir: WorkDir) -> list[VocabLookup]:
    """Per-process cache: a worker loads each table once, not once per unit."""
    if workdir.root not in _LOOKUPS:
        _LOOKUPS.clear()
        _LOOKUPS[workdir.root] = [
            VocabLookup(*load_lookup(workdir, t)) for t in range(NUM_CATEGORICAL)
        ]
    return _LOOKUPS[workdir.root]


def _to_records(rows: np.ndarray, tables: list[VocabLookup], dtype: np.dtype) -> np.ndarray:
    records = np.empty(rows.size, dtype)
    records["label"] = rows["label"]
    records["numerical"] = rows["numerical"]
    # Table-major copies: each lookup then reads one contiguous column.
    missing = np.ascontiguousarray(unpack_missing(rows["categorical_missing"]).T)
    values = np.ascontiguousarray(rows["categorical"].T)
    for t, table in enumerate(tables):
        records[f"cat_{t}"] = table(values[t], missing[t])
    return records


class _ShuffledWriter:
    """Writes training rows as bucket-sorted segments and records their bucket counts."""

    def __init__(self, f, task: TransformTask) -> None:
        self.f = f
        self.num_buckets = task.num_buckets
        self.rng = np.random.default_rng([task.seed, UNIT_SEED_STREAM, task.unit_index])
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.counts: list[np.ndarray] = []

    def write(self, records: np.ndarray) -> None:
        self.pending.append(records)
        self.pending_rows += records.size
        if self.pending_rows >= SEGMENT_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows = np.concatenate(self.pending)
        buckets = self.rng.integers(0, self.num_buckets, size=rows.size)
        # A stable sort of 16-bit keys is a radix sort: same order, several times faster.
        keys = buckets.astype(np.uint16) if self.num_buckets <= 1 << 16 else buckets
        self.f.write(rows[np.argsort(keys, kind="stable")])
        self.counts.append(np.bincount(buckets, minlength=self.num_buckets))
        self.pending, self.pending_rows = [], 0

    def bucket_counts(self) -> np.ndarray:
        """[segments, buckets] row counts."""
        return np.array(self.counts, np.int64).reshape(-1, self.num_buckets)


def transform_unit(task: TransformTask) -> int:
    """Writes ``unit_K.<split>.rec`` files (and bucket counts), then the done marker,
    then deletes the unit's pass-1 rows."""
    workdir = WorkDir(task.output_dir)
    tables = _lookups(workdir)
    dtype = record_dtype([np.dtype(d) for d in task.cat_dtypes])
    parsed_path = workdir.parsed(task.unit_index)
    size = os.path.getsize(parsed_path)
    if size != task.expected_rows * PARSED_DTYPE.itemsize:
        raise RuntimeError(
            f"{parsed_path}: {size} bytes, expected {task.expected_rows} rows "
            f"of {PARSED_DTYPE.itemsize} bytes"
        )
    parsed = np.memmap(parsed_path, PARSED_DTYPE, mode="r") if size else None
    written = {}
    with ExitStack() as stack:
        for split, lo, hi in task.ranges:
            f = stack.enter_context(atomic_open(workdir.pass2(task.unit_index, f"{split}.rec")))
            shuffled = split == "train" and task.num_buckets > 0
            writer = _ShuffledWriter(f, task) if shuffled else None
            for start in range(lo, hi, CHUNK_ROWS):
                records = _to_records(parsed[start : min(hi, start + CHUNK_ROWS)], tables, dtype)
                if writer is not None:
                    writer.write(records)
                else:
                    f.write(records)
            if writer is not None:
                writer.flush()
                save_npy(
                    workdir.pass2(task.unit_index, "train.buckets.npy"), writer.bucket_counts()
                )
            written[split] = hi - lo
    del parsed
    save_json(workdir.pass2(task.unit_index, "done.json"), written)
    os.remove(parsed_path)  # after the done marker: a rerun never needs it again
    return task.unit_index


def is_done(workdir: WorkDir, unit_index: int) -> bool:
    return os.path.exists(workdir.pass2(unit_index, "done.json"))
