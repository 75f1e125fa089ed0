"""Multi-hot list lengths over a run: the hotness pass 2 writes, and its record.

Pass 1 measures, per unit and table, the longest list (empty items dropped,
duplicates kept, before truncation) and the rows truncated by the column's cap
(``hotness`` or ``max_hotness``). Both engines merge the units here, by sum and
max, so the result does not depend on how units were spread over workers; the
schema turns the longest list into the hotness (``SchemaColumn.hotness_for``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from preproc.row_format import RowFormat


@dataclass
class ListLengths:
    """Per table, over the units added so far: rows truncated by the cap, longest list."""

    truncated: list[int]
    longest: list[int]

    @classmethod
    def empty(cls, num_tables: int) -> ListLengths:
        return cls([0] * num_tables, [0] * num_tables)

    def add(self, truncated: np.ndarray | None, longest: np.ndarray | None) -> None:
        """One unit's per-table counts (None: the unit recorded none, e.g. Criteo)."""
        if truncated is not None:
            self.truncated = [a + int(b) for a, b in zip(self.truncated, truncated, strict=True)]
        if longest is not None:
            self.longest = [max(a, int(b)) for a, b in zip(self.longest, longest, strict=True)]

    def row_format(self, row_format: RowFormat) -> RowFormat:
        """The run's row format with every multi-hot table at its chosen hotness."""
        return row_format.with_hotness(tuple(self.longest))


def metadata_entries(row_format: RowFormat, lengths: ListLengths) -> dict[str, dict]:
    """``metadata.json`` keys of a schema run, per multi-hot feature:
    ``multi_hot_truncated_rows`` and ``multi_hot_hotness`` (the hotness, the longest
    list seen and what decided it: ``hotness``, ``max_hotness``, ``longest_list`` or
    ``minimum``)."""
    schema = row_format.schema
    if schema is None:
        return {}
    truncated, hotness = {}, {}
    for column, rows, longest in zip(
        schema.tables, lengths.truncated, lengths.longest, strict=True
    ):
        if column.role != "multi_hot":
            continue
        chosen, rule = column.hotness_for(longest)
        truncated[column.name] = rows
        hotness[column.name] = {"hotness": chosen, "longest_list": longest, "chosen_by": rule}
    return {"multi_hot_truncated_rows": truncated, "multi_hot_hotness": hotness}


def summary_lines(metadata: dict) -> Sequence[str]:
    """The run summary's line on the multi-hot features (none without one)."""
    hotness = metadata.get("multi_hot_hotness", {})
    if not hotness:
        return []
    truncated = metadata.get("multi_hot_truncated_rows", {})
    parts = []
    for name, entry in hotness.items():
        if entry["chosen_by"] == "longest_list":
            detail = "the longest list"
        else:
            detail = f"{entry['chosen_by']}; longest list {entry['longest_list']:,}"
        if truncated.get(name):
            detail += f", {truncated[name]:,} rows truncated"
        parts.append(f"{name} {entry['hotness']} ({detail})")
    return ["multi-hot hotness: " + ", ".join(parts)]
