"""Placement of embedding tables on ranks (model parallelism).

A pure planner: it sees only table sizes, never TensorFlow or Horovod, so it
is unit-tested on its own and every rank computes the same plan from the same
inputs without any communication.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """Rows ``[row_start, row_end)`` of one table, held by one rank.

    An unsplit table is a single shard covering all its rows; ``row_end`` is
    None when the planner was not told the number of rows.
    """

    table: int
    row_start: int
    row_end: int | None
    nbytes: int
    rank: int


@dataclass(frozen=True)
class Placement:
    """Which rank holds which table (or row shard of a table).

    Attributes:
        world_size: number of ranks.
        table_bytes: size of each table, in table order.
        shards: every shard, ordered by table then by first row.
        budget_bytes: the per-rank budget the plan respects, or None.
    """

    world_size: int
    table_bytes: tuple[int, ...]
    shards: tuple[Shard, ...]
    budget_bytes: int | None = None

    @property
    def num_tables(self) -> int:
        return len(self.table_bytes)

    @property
    def total_bytes(self) -> int:
        return sum(self.table_bytes)

    def owners(self, table: int) -> tuple[int, ...]:
        """Ranks holding a shard of ``table``, in row order."""
        return tuple(s.rank for s in self.shards if s.table == table)

    @property
    def split_tables(self) -> tuple[int, ...]:
        """Tables held by more than one rank (split by rows)."""
        return tuple(t for t in range(self.num_tables) if len(self.owners(t)) > 1)

    @property
    def owner_of(self) -> tuple[int, ...]:
        """The single owner of every table.

        Raises:
            ValueError: If some table is split across ranks.
        """
        if self.split_tables:
            raise ValueError(
                f"tables {list(self.split_tables)} are split by rows over several ranks; "
                "use shards/owners() instead of owner_of"
            )
        return tuple(self.owners(t)[0] for t in range(self.num_tables))

    @property
    def tables_per_rank(self) -> tuple[tuple[int, ...], ...]:
        """For each rank, the tables it holds (all or part of), ascending."""
        return tuple(
            tuple(sorted({s.table for s in self.shards if s.rank == r}))
            for r in range(self.world_size)
        )

    def row_ranges(self, rank: int) -> dict[int, tuple[int, int]]:
        """Rows ``(start, end)`` ``rank`` holds of each split table it has a shard of."""
        split = set(self.split_tables)
        return {
            s.table: (s.row_start, s.row_end)
            for s in self.shards
            if s.rank == rank and s.table in split
        }

    @property
    def bytes_per_rank(self) -> tuple[int, ...]:
        loads = [0] * self.world_size
        for s in self.shards:
            loads[s.rank] += s.nbytes
        return tuple(loads)

    def to_dict(self) -> dict:
        """JSON-ready summary for the structured (DLLogger-style) log."""
        return {
            "world_size": self.world_size,
            "budget_bytes": self.budget_bytes,
            "total_bytes": self.total_bytes,
            "tables_per_rank": [list(t) for t in self.tables_per_rank],
            "bytes_per_rank": list(self.bytes_per_rank),
            "split_tables": {
                str(t): [[s.row_start, s.row_end, s.rank] for s in self.shards if s.table == t]
                for t in self.split_tables
            },
        }

    def describe(self) -> str:
        """A multi-line summary for the start-of-run log."""
        budget = "none" if self.budget_bytes is None else _human(self.budget_bytes)
        lines = [
            f"embedding placement: {self.num_tables} tables, {_human(self.total_bytes)} "
            f"over {self.world_size} rank(s), per-rank budget {budget}"
        ]
        for rank, (tables, nbytes) in enumerate(
            zip(self.tables_per_rank, self.bytes_per_rank, strict=True)
        ):
            listed = ", ".join(str(t) for t in tables) or "-"
            lines.append(
                f"  rank {rank}: {len(tables)} tables, {_human(nbytes)} ({nbytes} B): {listed}"
            )
        for table in self.split_tables:
            parts = ", ".join(
                f"rows [{s.row_start}, {s.row_end}) -> rank {s.rank}"
                for s in self.shards
                if s.table == table
            )
            lines.append(f"  table {table} split by rows: {parts}")
        return "\n".join(lines)


def _human(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    exponent = min(int(math.log(nbytes, 1024)), 4)
    return f"{nbytes / 1024**exponent:.1f} {'BKMGT'[exponent]}iB"


def _validate(
    table_bytes: Sequence[int],
    world_size: int,
    budget_bytes: int | None,
    table_rows: Sequence[int] | None,
) -> None:
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if not table_bytes:
        raise ValueError("no tables to place: table_bytes is empty")
    bad = [(t, b) for t, b in enumerate(table_bytes) if not isinstance(b, int) or b <= 0]
    if bad:
        raise ValueError(f"table sizes must be positive integers, got (table, bytes) {bad}")
    if budget_bytes is not None and (not isinstance(budget_bytes, int) or budget_bytes <= 0):
        raise ValueError(f"budget_bytes must be a positive integer or None, got {budget_bytes!r}")
    if table_rows is None:
        return
    if len(table_rows) != len(table_bytes):
        raise ValueError(
            f"table_rows has {len(table_rows)} entries but table_bytes has {len(table_bytes)}"
        )
    for t, (rows, nbytes) in enumerate(zip(table_rows, table_bytes, strict=True)):
        if not isinstance(rows, int) or rows <= 0 or nbytes % rows:
            raise ValueError(
                f"table {t}: {nbytes} bytes is not a whole number of rows ({rows!r} rows)"
            )


def _row_shards(table: int, rows: int, nbytes: int, budget: int) -> list[tuple[int, int, int]]:
    """Splits a table into the fewest near-equal row ranges that each fit ``budget``."""
    row_bytes = nbytes // rows
    if row_bytes > budget:
        raise ValueError(
            f"table {table}: one row is {row_bytes} bytes, more than the per-rank budget "
            f"of {budget} bytes; it cannot be split by rows"
        )
    count = math.ceil(nbytes / budget)
    while math.ceil(rows / count) * row_bytes > budget:
        count += 1
    base, extra = divmod(rows, count)
    ranges, start = [], 0
    for k in range(count):
        size = base + (1 if k < extra else 0)
        ranges.append((start, start + size, size * row_bytes))
        start += size
    return ranges


def plan_placement(
    table_bytes: Sequence[int],
    world_size: int,
    budget_bytes: int | None = None,
    table_rows: Sequence[int] | None = None,
) -> Placement:
    """Places embedding tables on ranks, balancing bytes.

    Heuristic (greedy, largest first): pieces are taken in decreasing size
    (ties: lower table index, then lower row first) and each goes to the rank
    that holds the fewest bytes so far (ties: lower rank). The least-loaded
    rank is also the only candidate worth checking against the budget: if a
    piece does not fit there, it fits nowhere.

    Splitting: a table larger than ``budget_bytes`` is split by rows (never by
    columns, so every rank still produces whole D-wide vectors) into the
    fewest contiguous, near-equal row ranges that each fit the budget. This
    needs ``table_rows``; without it such a table is an error. A rank holds
    at most one shard of a table (the greedy rule skips ranks that already
    hold one), so a table splits over at most ``world_size`` ranks. Shards
    are ordinary pieces for the balancing: their bytes count on their rank
    like a whole table's, so the other tables fill around them.

    Args:
        table_bytes: size in bytes of each table (rows x D x 4 for float32).
        world_size: number of ranks, >= 1.
        budget_bytes: most bytes of tables one rank may hold, or None.
        table_rows: rows of each table; enables splitting by rows.

    Returns:
        The :class:`Placement`.

    Raises:
        ValueError: On invalid arguments, or when the tables cannot fit the
            budget; the message names the table, its size and the budget.
    """
    _validate(table_bytes, world_size, budget_bytes, table_rows)
    pieces: list[tuple[int, int, int | None, int]] = []  # (table, row_start, row_end, bytes)
    for t, nbytes in enumerate(table_bytes):
        rows = table_rows[t] if table_rows is not None else None
        if budget_bytes is not None and nbytes > budget_bytes:
            if table_rows is None:
                raise ValueError(
                    f"table {t} is {nbytes} bytes, larger than the per-rank budget of "
                    f"{budget_bytes} bytes; pass table_rows to split it by rows"
                )
            pieces += [(t, a, b, n) for a, b, n in _row_shards(t, rows, nbytes, budget_bytes)]
        else:
            pieces.append((t, 0, rows, nbytes))

    loads = [0] * world_size
    holders: dict[int, set[int]] = {}  # table -> ranks holding a shard of it
    shards: list[Shard] = []
    for table, start, end, nbytes in sorted(pieces, key=lambda p: (-p[3], p[0], p[1])):
        candidates = [r for r in range(world_size) if r not in holders.get(table, ())]
        if not candidates:
            raise ValueError(
                f"table {table} needs more row shards than the {world_size} rank(s) "
                f"(one shard per rank); its {table_bytes[table]} bytes do not fit "
                f"{world_size} x {budget_bytes} bytes"
            )
        rank = min(candidates, key=lambda r: (loads[r], r))
        if budget_bytes is not None and loads[rank] + nbytes > budget_bytes:
            whole = end is None or (
                start == 0 and table_rows is not None and end == table_rows[table]
            )
            what = f"table {table}" if whole else f"table {table} rows [{start}, {end})"
            raise ValueError(
                f"cannot place {what} ({nbytes} bytes): the least-loaded rank {rank} already "
                f"holds {loads[rank]} bytes of a {budget_bytes}-byte budget; all tables need "
                f"{sum(table_bytes)} bytes, {world_size} ranks offer {world_size * budget_bytes}"
            )
        loads[rank] += nbytes
        holders.setdefault(table, set()).add(rank)
        shards.append(Shard(table, start, end, nbytes, rank))
    shards.sort(key=lambda s: (s.table, s.row_start))
    return Placement(
        world_size=world_size,
        table_bytes=tuple(table_bytes),
        shards=tuple(shards),
        budget_bytes=budget_bytes,
    )


def embedding_table_bytes(cardinalities: Sequence[int], embedding_dim: int) -> list[int]:
    """Bytes of float32 tables ``[rows, embedding_dim]``, for :func:`plan_placement`."""
    return [rows * embedding_dim * 4 for rows in cardinalities]


# Share of a rank's device memory planned for embedding tables and their
# optimizer slots; the rest holds the MLPs, the step's activations (looked-up
# vectors, their gradients) and the all-to-all buffers.
EMBEDDING_MEMORY_FRACTION = 0.75


def embedding_budget_bytes(
    memory_limit_gb: float, slots_per_table: int, fraction: float = EMBEDDING_MEMORY_FRACTION
) -> int:
    """Per-rank budget of table weight bytes for :func:`plan_placement`.

    A table of ``W`` weight bytes occupies ``W * (1 + slots_per_table)`` with
    its optimizer slots (each slot is a float32 array of the table's shape:
    0 for SGD, 1 for Adagrad, 2 for Adam), and tables may use ``fraction`` of
    the ``memory_limit_gb`` GiB given to TensorFlow on one device.

    Raises:
        ValueError: non-positive limit, negative slot count, fraction outside (0, 1].
    """
    if not memory_limit_gb > 0:
        raise ValueError(f"memory_limit_gb must be positive, got {memory_limit_gb!r}")
    if isinstance(slots_per_table, bool) or not isinstance(slots_per_table, int):
        raise ValueError(f"slots_per_table must be an integer, got {slots_per_table!r}")
    if slots_per_table < 0:
        raise ValueError(f"slots_per_table must be >= 0, got {slots_per_table}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return int(memory_limit_gb * 2**30 * fraction) // (1 + slots_per_table)
