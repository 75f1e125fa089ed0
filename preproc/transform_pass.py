"""Pass 2: parse a unit again, map it to ids and features, write its rows per split.

Rows are packed records (``schema.record_dtype``). Training rows of a shuffled
run are spread over buckets by a generator seeded from (seed, unit index) and
stored sorted by bucket, with the per-bucket row counts beside them; the
assembly step then gathers each bucket from every unit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from preproc.arrow_parse import parse_lines
from preproc.numerical import transform
from preproc.schema import NUM_CATEGORICAL, record_dtype
from preproc.units import Unit, UnitReader
from preproc.vocab import lookup
from preproc.vocab_pass import load_lookup
from preproc.workdir import WorkDir, atomic_open, save_json, save_npy

UNIT_SEED_STREAM = 0  # second word of the seed of a unit's bucket assignment


@dataclass(frozen=True)
class TransformTask:
    """Pass 2 of one unit.

    Attributes:
        ranges: (split, first row, end row) over the unit's accepted rows.
        num_buckets: shuffle buckets of the training rows; 0 keeps input order.
    """

    unit: Unit
    output_dir: str
    labeled: bool
    numerical_transform: str
    cat_dtypes: tuple[str, ...]
    ranges: tuple[tuple[str, int, int], ...]
    expected_rows: int
    num_buckets: int
    seed: int


_LOOKUPS: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}


def _lookups(workdir: WorkDir) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-process cache: a worker maps each table once, not once per unit."""
    if workdir.root not in _LOOKUPS:
        _LOOKUPS[workdir.root] = [load_lookup(workdir, t) for t in range(NUM_CATEGORICAL)]
    return _LOOKUPS[workdir.root]


def bucket_of_rows(seed: int, unit_index: int, rows: int, num_buckets: int) -> np.ndarray:
    rng = np.random.default_rng([seed, UNIT_SEED_STREAM, unit_index])
    return rng.integers(0, num_buckets, size=rows)


def transform_unit(task: TransformTask) -> int:
    """Writes ``unit_K.<split>.rec`` files (and bucket counts), then the done marker."""
    workdir = WorkDir(task.output_dir)
    tables = _lookups(workdir)
    dtype = record_dtype([np.dtype(d) for d in task.cat_dtypes])
    blocks = []
    for block in UnitReader(task.unit):
        parsed = parse_lines(block, task.labeled)
        records = np.empty(parsed.num_rows, dtype)
        records["label"] = parsed.labels
        records["numerical"] = transform(
            task.numerical_transform, parsed.integers, parsed.integer_missing
        )
        for t, (sorted_values, sorted_ids) in enumerate(tables):
            records[f"cat_{t}"] = lookup(
                sorted_values,
                sorted_ids,
                parsed.categorical[:, t],
                parsed.categorical_missing[:, t],
            )
        blocks.append(records)
    records = np.concatenate(blocks) if blocks else np.empty(0, dtype)
    if records.size != task.expected_rows:
        raise RuntimeError(
            f"{task.unit.path} bytes {task.unit.start}-{task.unit.end}: pass 2 accepted "
            f"{records.size} rows, pass 1 {task.expected_rows} (file changed during the run?)"
        )
    written = {}
    for split, lo, hi in task.ranges:
        rows = records[lo:hi]
        if split == "train" and task.num_buckets > 0:
            buckets = bucket_of_rows(task.seed, task.unit.index, rows.size, task.num_buckets)
            rows = rows[np.argsort(buckets, kind="stable")]
            counts = np.bincount(buckets, minlength=task.num_buckets).astype(np.int64)
            save_npy(workdir.pass2(task.unit.index, "train.buckets.npy"), counts)
        with atomic_open(workdir.pass2(task.unit.index, f"{split}.rec")) as f:
            f.write(rows.tobytes())
        written[split] = int(rows.size)
    save_json(workdir.pass2(task.unit.index, "done.json"), written)
    return task.unit.index


def is_done(workdir: WorkDir, unit_index: int) -> bool:
    return os.path.exists(workdir.pass2(unit_index, "done.json"))
