"""Final step: write the split files from the pass-2 records.

Each task writes a contiguous row range of a split, at its byte offsets, into
files preallocated under ``<name>.tmp``; tasks never overlap, so they run in
any order and in parallel, and a repeated task rewrites the same bytes.

- Unshuffled split: one task per unit, rows in input order.
- Shuffled training set: one task per bucket; it gathers the bucket's rows
  from every unit (in unit order) and permutes them with a generator seeded
  from (seed, bucket). Each row picked a uniformly random bucket, so the
  result is a uniformly random permutation; memory is one bucket.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from models.data.feature_spec import SPLITS, Column
from preproc.row_format import CRITEO, RowFormat
from preproc.workdir import WorkDir, atomic_open

BUCKET_SEED_STREAM = 1


@dataclass(frozen=True)
class AssembleTask:
    """Rows [row_offset, row_offset + rows) of ``split``.

    Attributes:
        pieces: (unit index, first record, end record) in that unit's ``<split>.rec``;
            empty for a bucket task, which reads its pieces from the bucket index.
        bucket: the bucket gathered and permuted by this task, or -1 to keep the order.
    """

    split: str
    task_index: int
    output_dir: str
    cat_dtypes: tuple[str, ...]
    row_offset: int
    rows: int
    pieces: tuple[tuple[int, int, int], ...]
    bucket: int
    seed: int
    row_format: RowFormat = CRITEO


def column_files(cat_dtypes: tuple[str, ...], row_format: RowFormat | None = None) -> list[Column]:
    """(file name, dtype, values per row, features) of a split's files (Criteo's by default)."""
    return (row_format or RowFormat()).columns(cat_dtypes)


def num_shuffle_buckets(train_rows: int, bucket_rows: int, shuffle: bool) -> int:
    """Buckets of the training-set shuffle: depends on the row count only, never on workers."""
    return max(1, math.ceil(train_rows / bucket_rows)) if shuffle else 0


def permute_bucket(rows: np.ndarray, seed: int, bucket: int) -> np.ndarray:
    """The final order of one shuffle bucket's gathered rows."""
    rng = np.random.default_rng([seed, BUCKET_SEED_STREAM, bucket])
    return rows[rng.permutation(rows.size)]


def record_columns(
    rows: np.ndarray, cat_dtypes: tuple[str, ...], row_format: RowFormat | None = None
) -> list[memoryview]:
    """The bytes each split file gets for ``rows`` (records), in ``column_files`` order."""
    row_format = row_format or RowFormat()
    return [
        memoryview(np.ascontiguousarray(value, dtype=column.dtype).reshape(-1).view(np.uint8))
        for column, value in zip(
            row_format.columns(cat_dtypes), row_format.record_values(rows), strict=True
        )
    ]


def preallocate(
    workdir: WorkDir,
    split: str,
    rows: int,
    cat_dtypes: tuple[str, ...],
    row_format: RowFormat | None = None,
) -> None:
    """Creates the ``.tmp`` files of a split at their final size (kept when resuming)."""
    os.makedirs(os.path.join(workdir.root, split), exist_ok=True)
    for column in column_files(cat_dtypes, row_format):
        final = workdir.split_file(split, column.file)
        if os.path.exists(final):
            continue
        with open(final + ".tmp", "ab") as f:
            f.truncate(rows * column.width * column.dtype.itemsize)


def finalize(
    workdir: WorkDir, split: str, cat_dtypes: tuple[str, ...], row_format: RowFormat | None = None
) -> None:
    for name, *_ in column_files(cat_dtypes, row_format):
        final = workdir.split_file(split, name)
        if os.path.exists(final + ".tmp"):
            os.replace(final + ".tmp", final)


def _write_at(path: str, data: memoryview, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
    finally:
        os.close(fd)


def assemble(task: AssembleTask) -> int:
    workdir = WorkDir(task.output_dir)
    dtype = task.row_format.record_dtype([np.dtype(d) for d in task.cat_dtypes])
    parts = []
    pieces = _bucket_pieces(workdir, task.bucket) if task.bucket >= 0 else task.pieces
    for unit, lo, hi in pieces:
        if hi > lo:
            records = np.memmap(workdir.pass2(unit, f"{task.split}.rec"), dtype, mode="r")
            parts.append(np.array(records[lo:hi]))
    rows = np.concatenate(parts) if parts else np.empty(0, dtype)
    if rows.size != task.rows:
        raise RuntimeError(
            f"{task.split} task {task.task_index}: {rows.size} rows, expected {task.rows}"
        )
    if task.bucket >= 0:
        rows = permute_bucket(rows, task.seed, task.bucket)
    for column, data in zip(
        column_files(task.cat_dtypes, task.row_format),
        record_columns(rows, task.cat_dtypes, task.row_format),
        strict=True,
    ):
        _write_at(
            workdir.split_file(task.split, column.file) + ".tmp",
            data,
            task.row_offset * column.width * column.dtype.itemsize,
        )
    with atomic_open(workdir.assembled(task.split, task.task_index)) as f:
        f.write(f"{rows.size}\n".encode())
    return rows.size


_INDEX = ("unit", "begin", "count")


def _index_path(workdir: WorkDir, name: str) -> str:
    return os.path.join(workdir.work, f"bucket_index_{name}.npy")


def write_bucket_index(workdir: WorkDir, train_units: list[int], num_buckets: int) -> None:
    """Where every bucket's rows lie in the units' training record files.

    ``begin[b, s]`` and ``count[b, s]`` locate bucket ``b`` in segment ``s``
    (segments of all units in order, ``unit[s]`` their unit). Bucket-major, so
    a bucket task reads one contiguous row; built through memory maps one unit
    at a time, so the coordinator never holds units x buckets numbers.
    """
    if all(os.path.exists(_index_path(workdir, n)) for n in _INDEX):
        return
    segment_counts = [
        np.load(workdir.pass2(u, "train.buckets.npy"), mmap_mode="r").shape[0] for u in train_units
    ]
    shape = (num_buckets, sum(segment_counts))
    tmp = {n: _index_path(workdir, n) + ".tmp" for n in _INDEX}
    unit = np.lib.format.open_memmap(tmp["unit"], "w+", np.int32, (shape[1],))
    begin = np.lib.format.open_memmap(tmp["begin"], "w+", np.int64, shape)
    count = np.lib.format.open_memmap(tmp["count"], "w+", np.int32, shape)
    column = 0
    for u, segments in zip(train_units, segment_counts, strict=True):
        counts = np.load(workdir.pass2(u, "train.buckets.npy"))  # [segments, buckets]
        starts = np.concatenate([[0], np.cumsum(counts.ravel())[:-1]]).reshape(counts.shape)
        unit[column : column + segments] = u
        begin[:, column : column + segments] = starts.T
        count[:, column : column + segments] = counts.T
        column += segments
    for array in (unit, begin, count):
        array.flush()
    del unit, begin, count
    for name in _INDEX:
        os.replace(tmp[name], _index_path(workdir, name))


def _bucket_pieces(workdir: WorkDir, bucket: int) -> list[tuple[int, int, int]]:
    unit, begin, count = (np.load(_index_path(workdir, n), mmap_mode="r") for n in _INDEX)
    begin, count = np.asarray(begin[bucket]), np.asarray(count[bucket])
    keep = np.flatnonzero(count > 0)
    return [(int(unit[s]), int(begin[s]), int(begin[s] + count[s])) for s in keep]


def _bucket_rows(workdir: WorkDir) -> np.ndarray:
    count = np.load(_index_path(workdir, "count"), mmap_mode="r")
    step = max(1, (1 << 24) // max(1, count.shape[1]))  # bounded memory per chunk of rows
    return np.concatenate(
        [
            np.asarray(count[b : b + step]).sum(axis=1, dtype=np.int64)
            for b in range(0, len(count), step)
        ]
    )


def plan_assembly(
    output_dir: str,
    seed: int,
    ranges: list[list[tuple[str, int, int]]],
    cat_dtypes: tuple[str, ...],
    num_buckets: int,
    row_format: RowFormat | None = None,
) -> dict[str, list[AssembleTask]]:
    """Tasks per split, in output order: one per unit (unshuffled splits) or per bucket.

    Args:
        ranges: per unit, its (split, first row, end row) ranges (``splits.plan_splits``).
        num_buckets: shuffle buckets of the training set, 0 when it keeps input order.
    """
    workdir = WorkDir(output_dir)
    tasks: dict[str, list[AssembleTask]] = {s: [] for s in SPLITS}
    offsets = dict.fromkeys(SPLITS, 0)

    def add(split: str, rows: int, pieces: tuple, bucket: int) -> None:
        index = len(tasks[split])
        tasks[split].append(
            AssembleTask(
                split,
                index,
                output_dir,
                cat_dtypes,
                offsets[split],
                rows,
                pieces,
                bucket,
                seed,
                row_format or RowFormat(),
            )
        )
        offsets[split] += rows

    for unit_index, unit_ranges in enumerate(ranges):
        for split, lo, hi in unit_ranges:
            if not (split == "train" and num_buckets > 0):
                add(split, hi - lo, ((unit_index, 0, hi - lo),), -1)
    if num_buckets > 0:
        train_units = [u for u, r in enumerate(ranges) if any(s == "train" for s, _, _ in r)]
        write_bucket_index(workdir, train_units, num_buckets)
        for bucket, rows in enumerate(_bucket_rows(workdir).tolist()):
            add("train", rows, (), bucket)
    return tasks
