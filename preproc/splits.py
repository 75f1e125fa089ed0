"""Which rows go to train, test and validation.

- All inputs named ``day_N`` (``.gz``/``.txt`` allowed), at least two: the
  Criteo 1TB rule. The highest-numbered day is the test day: its first half
  (rounded up) is ``test``, the rest ``validation``; every other day is ``train``.
- Otherwise: the last ``test_fraction`` of the accepted rows (round half up), in
  input order, is ``test``; ``validation`` is empty.

Rows are counted after rejects, so the split is exact whatever is rejected.
"""

from __future__ import annotations

import os
import re

from preproc.units import Unit

DAY_PATTERN = re.compile(r"^day_(\d+)(\.txt)?(\.gz)?$")

Ranges = list[tuple[str, int, int]]


def day_number(path: str) -> int | None:
    match = DAY_PATTERN.match(os.path.basename(path))
    return int(match.group(1)) if match else None


def split_rule(paths: list[str]) -> str:
    """``"days"`` or ``"fraction"`` (see the module docstring)."""
    days = [day_number(p) for p in paths]
    return "days" if len(paths) >= 2 and None not in days else "fraction"


def _cut(unit_rows: list[int], boundary: int, before: str, after: str, base: int = 0) -> list:
    """Per unit ranges of rows [0, boundary) -> ``before``, the rest -> ``after``."""
    ranges = []
    offset = base
    for rows in unit_rows:
        lo, hi = offset, offset + rows
        unit: Ranges = []
        if min(hi, boundary) > lo:
            unit.append((before, 0, min(hi, boundary) - lo))
        if hi > max(lo, boundary):
            unit.append((after, max(lo, boundary) - lo, rows))
        ranges.append(unit)
        offset = hi
    return ranges


def plan_splits(
    paths: list[str], units: list[Unit], unit_rows: list[int], test_fraction: float
) -> list[Ranges]:
    """Per unit, the (split, first row, end row) ranges of its accepted rows."""
    if split_rule(paths) == "days":
        last_file = max(range(len(paths)), key=lambda i: day_number(paths[i]))
        last_rows = [r for u, r in zip(units, unit_rows, strict=True) if u.file_index == last_file]
        test_rows = (sum(last_rows) + 1) // 2
        last_ranges = iter(_cut(last_rows, test_rows, "test", "validation"))
        return [
            next(last_ranges) if u.file_index == last_file else ([("train", 0, r)] if r else [])
            for u, r in zip(units, unit_rows, strict=True)
        ]
    total = sum(unit_rows)
    test_rows = int(total * test_fraction + 0.5)
    return _cut(unit_rows, total - test_rows, "train", "test")
