"""Pass 1: parse and validate a unit, count its categorical values, keep its rejects.

The result of a unit is one ``.npz`` (its done marker): per table the sorted
unique values and counts, the line and row counts, and the rejected lines with
their line index inside the unit (absolute line numbers need the line counts
of the file's earlier units and are computed by the caller).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from preproc.arrow_parse import parse_lines
from preproc.schema import NUM_CATEGORICAL, REASON_CODE
from preproc.units import Unit, UnitReader
from preproc.vocab import unit_counts
from preproc.workdir import WorkDir, atomic_open


@dataclass(frozen=True)
class CountTask:
    unit: Unit
    output_dir: str
    labeled: bool


@dataclass
class UnitSummary:
    """What the coordinator needs of a finished pass-1 unit."""

    unit_index: int
    num_lines: int
    num_rows: int
    reject_lines: np.ndarray  # 0-based line index inside the unit
    reject_codes: np.ndarray
    rejects: list[tuple[str, bytes]]  # (detail, raw line)


def count_unit(task: CountTask) -> int:
    """Runs pass 1 on one unit and writes its result file; returns the unit index."""
    workdir = WorkDir(task.output_dir)
    columns: list[list[np.ndarray]] = [[] for _ in range(NUM_CATEGORICAL)]
    num_lines = num_rows = 0
    reject_lines, reject_codes, rejects = [], [], []
    reader = UnitReader(task.unit)
    for block in reader:
        parsed = parse_lines(block, task.labeled)
        for table in range(NUM_CATEGORICAL):
            present = ~parsed.categorical_missing[:, table]
            columns[table].append(parsed.categorical[present, table])
        reject_lines.append(parsed.reject_lines + num_lines)
        reject_codes.append(parsed.reject_codes)
        rejects += zip(parsed.reject_details, parsed.reject_raw, strict=True)
        num_lines += parsed.num_lines
        num_rows += parsed.num_rows
    if reader.error is not None:
        message, tail = reader.error
        reject_lines.append(np.array([num_lines], np.int64))
        reject_codes.append(np.array([REASON_CODE["gzip_error"]], np.uint8))
        rejects.append((message, tail))
        num_lines += 1
    counts = unit_counts([np.concatenate(c) if c else np.zeros(0, np.uint32) for c in columns])
    arrays = {f"values_{t}": v for t, (v, _) in enumerate(counts)}
    arrays |= {f"counts_{t}": c for t, (_, c) in enumerate(counts)}
    reject_json = json.dumps([(d, raw.decode("latin-1")) for d, raw in rejects])
    with atomic_open(workdir.pass1(task.unit.index)) as f:
        np.savez(
            f,
            num_lines=np.int64(num_lines),
            num_rows=np.int64(num_rows),
            reject_lines=np.concatenate(reject_lines or [np.zeros(0, np.int64)]),
            reject_codes=np.concatenate(reject_codes or [np.zeros(0, np.uint8)]),
            reject_json=np.frombuffer(reject_json.encode(), np.uint8),
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
        )


def load_unit_counts(workdir: WorkDir, unit_index: int, table: int) -> tuple[np.ndarray, ...]:
    """Sorted values and counts of one table in one unit (reads only that table)."""
    with np.load(workdir.pass1(unit_index)) as data:
        return data[f"values_{table}"], data[f"counts_{table}"]
