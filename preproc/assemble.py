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

import os
from dataclasses import dataclass

import numpy as np

from preproc.schema import NUM_CATEGORICAL, NUM_NUMERICAL, SPLITS, record_dtype
from preproc.workdir import WorkDir, atomic_open

BUCKET_SEED_STREAM = 1


@dataclass(frozen=True)
class AssembleTask:
    """Rows [row_offset, row_offset + sum of pieces) of ``split``.

    Attributes:
        pieces: (unit index, first record, end record) in that unit's ``<split>.rec``.
        bucket: the bucket permuted by this task, or -1 to keep the order.
    """

    split: str
    task_index: int
    output_dir: str
    cat_dtypes: tuple[str, ...]
    row_offset: int
    pieces: tuple[tuple[int, int, int], ...]
    bucket: int
    seed: int


def column_files(cat_dtypes: tuple[str, ...]) -> list[tuple[str, np.dtype, int]]:
    """(file name, dtype, values per row) of a split's files."""
    files = [("label.bin", np.dtype(np.bool_), 1)]
    files.append(("numerical.bin", np.dtype("<f2"), NUM_NUMERICAL))
    files += [(f"cat_{t}.bin", np.dtype(d), 1) for t, d in enumerate(cat_dtypes)]
    return files


def preallocate(workdir: WorkDir, split: str, rows: int, cat_dtypes: tuple[str, ...]) -> None:
    """Creates the ``.tmp`` files of a split at their final size (kept when resuming)."""
    os.makedirs(os.path.join(workdir.root, split), exist_ok=True)
    for name, dtype, width in column_files(cat_dtypes):
        final = workdir.split_file(split, name)
        if os.path.exists(final):
            continue
        with open(final + ".tmp", "ab") as f:
            f.truncate(rows * width * dtype.itemsize)


def finalize(workdir: WorkDir, split: str, cat_dtypes: tuple[str, ...]) -> None:
    for name, _, _ in column_files(cat_dtypes):
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
    dtype = record_dtype([np.dtype(d) for d in task.cat_dtypes])
    parts = []
    for unit, lo, hi in task.pieces:
        if hi > lo:
            records = np.memmap(workdir.pass2(unit, f"{task.split}.rec"), dtype, mode="r")
            parts.append(np.array(records[lo:hi]))
    rows = np.concatenate(parts) if parts else np.empty(0, dtype)
    if task.bucket >= 0:
        rng = np.random.default_rng([task.seed, BUCKET_SEED_STREAM, task.bucket])
        rows = rows[rng.permutation(rows.size)]
    columns = {
        "label.bin": rows["label"].astype(np.bool_),
        "numerical.bin": rows["numerical"],
    }
    columns |= {f"cat_{t}.bin": rows[f"cat_{t}"] for t in range(NUM_CATEGORICAL)}
    for name, dtype_, width in column_files(task.cat_dtypes):
        data = np.ascontiguousarray(columns[name], dtype=dtype_)
        _write_at(
            workdir.split_file(task.split, name) + ".tmp",
            memoryview(data.tobytes()),
            task.row_offset * width * dtype_.itemsize,
        )
    with atomic_open(workdir.assembled(task.split, task.task_index)) as f:
        f.write(f"{rows.size}\n".encode())
    return rows.size


def plan_assembly(
    output_dir: str,
    seed: int,
    ranges: list[list[tuple[str, int, int]]],
    cat_dtypes: tuple[str, ...],
    num_buckets: int,
) -> dict[str, list[AssembleTask]]:
    """Tasks per split, in output order: one per unit (unshuffled splits) or per bucket.

    Args:
        ranges: per unit, its (split, first row, end row) ranges (``splits.plan_splits``).
        num_buckets: shuffle buckets of the training set, 0 when it keeps input order.
    """
    workdir = WorkDir(output_dir)
    tasks: dict[str, list[AssembleTask]] = {s: [] for s in SPLITS}
    offsets = dict.fromkeys(SPLITS, 0)

    def add(split: str, pieces: list, bucket: int) -> None:
        rows = sum(hi - lo for _, lo, hi in pieces)
        index = len(tasks[split])
        tasks[split].append(
            AssembleTask(
                split,
                index,
                output_dir,
                cat_dtypes,
                offsets[split],
                tuple(pieces),
                bucket,
                seed,
            )
        )
        offsets[split] += rows

    for unit_index, unit_ranges in enumerate(ranges):
        for split, lo, hi in unit_ranges:
            if not (split == "train" and num_buckets > 0):
                add(split, [(unit_index, 0, hi - lo)], -1)
    if num_buckets > 0:
        # Record ranges of every (unit, segment, bucket) in the units' train files.
        starts = {}
        for u, unit_ranges in enumerate(ranges):
            if any(s == "train" for s, _, _ in unit_ranges):
                counts = np.load(workdir.pass2(u, "train.buckets.npy"))
                flat = np.concatenate([[0], np.cumsum(counts.ravel())])
                starts[u] = flat[:-1].reshape(counts.shape), counts
        for bucket in range(num_buckets):
            pieces = [
                (u, int(begin[s, bucket]), int(begin[s, bucket] + counts[s, bucket]))
                for u, (begin, counts) in starts.items()
                for s in range(counts.shape[0])
                if counts[s, bucket] > 0
            ]
            add("train", pieces, bucket)
    return tasks
