"""What the Spark executors run: the local engine's per-unit code, fed from RDD partitions.

Nothing here imports PySpark; every function is a plain generator over a
partition's elements, so the row parsing, counting, vocabulary, id lookup,
numerical transform and shuffle are the very functions ``preproc.pipeline``
calls (``count_pass.UnitParser``, ``vocab``, ``transform_pass.unit_outputs``,
``assemble.permute_bucket``).

Partitions: pass 1 has one partition per unit (partition index = unit index).
The output RDD has one partition per piece of the final files, in file order
(``OutputPlan``): the shuffle buckets of ``train`` (or ordered row ranges when
it is not shuffled), then ordered row ranges of ``test`` and ``validation``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from models.data.feature_spec import SPLITS
from preproc.assemble import permute_bucket
from preproc.count_pass import UnitParser, UnitResult, UnitSummary
from preproc.row_format import CRITEO, RowFormat
from preproc.transform_pass import RowStream, unit_outputs
from preproc.units import Unit
from preproc.vocab import VocabLookup, build_vocab, merge_counts
from preproc.vocab_pass import column_stats

ROWS, RESULT = "rows", "result"


def parse_units(
    partition: int,
    units: Iterable[Unit],
    labeled: bool,
    numerical_transform: str,
    row_format: RowFormat,
) -> Iterator[tuple]:
    """Pass 1: ``(ROWS, unit, parsed rows)`` per block, then ``(RESULT, unit, UnitResult)``."""
    for unit in units:
        if unit.index != partition:
            raise RuntimeError(f"unit {unit.index} landed in partition {partition}")
        parser = UnitParser(unit, labeled, numerical_transform, row_format)
        for rows in parser:
            yield ROWS, unit.index, rows
        yield RESULT, unit.index, parser.result


def is_result(element: tuple) -> bool:
    return element[0] == RESULT


class UnitTotals(NamedTuple):
    """What the driver collects of every unit after pass 1 (``unit_totals``)."""

    unit: int
    lines: int
    rows: int
    rejected: int
    truncated: np.ndarray | None  # per table, multi-hot rows longer than their cap
    longest: np.ndarray | None  # per table, the longest multi-hot list


def unit_totals(element: tuple) -> UnitTotals:
    """The ``UnitTotals`` of a ``RESULT`` element."""
    summary = element[2].summary
    return UnitTotals(
        element[1],
        summary.num_lines,
        summary.num_rows,
        summary.reject_codes.size,
        summary.truncated,
        summary.longest,
    )


def unit_summary(element: tuple) -> UnitSummary:
    return element[2].summary


def table_counts(element: tuple) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
    """Per table, the unit's (sorted values, counts), keyed by the table index."""
    result: UnitResult = element[2]
    yield from enumerate(result.counts)


def table_vocabularies(
    keyed_counts: Iterable[tuple[int, tuple]], thresholds: tuple[int, ...]
) -> Iterator[tuple]:
    """Merges each table's per-unit counts into its vocabulary: ``(table, vocab, sorted
    values, sorted ids, column statistics)``. The partition holds whole tables, sorted by
    table, so one table's counts are merged at a time, as they stream in."""
    for table, group in itertools.groupby(keyed_counts, key=lambda item: item[0]):
        values, counts = merge_counts(counts for _, counts in group)
        vocab, sorted_values, sorted_ids = build_vocab(values, counts, thresholds[table])
        stats = column_stats(values, counts, vocab, thresholds[table])
        yield table, vocab, sorted_values, sorted_ids, stats


@dataclass(frozen=True)
class OutputPlan:
    """Where each unit's pass-2 records go in the output partitions.

    Attributes:
        ranges: per unit, (split, first row, end row) of its accepted rows.
        split_offsets: per unit and split, the split row its first row of that split lands on.
        first_partition: per split, the index of its first output partition.
        num_partitions: per split, its output partitions.
        ordered_rows: rows per ordered output partition (the last may hold fewer).
        num_buckets: shuffle buckets of ``train`` (0: it keeps input order).
        cat_dtypes: categorical dtypes of the records.
        seed: the shuffle seed.
        row_format: the run's row layout (Criteo's or a schema's).
    """

    ranges: tuple[tuple[tuple[str, int, int], ...], ...]
    split_offsets: tuple[dict[str, int], ...]
    first_partition: dict[str, int]
    num_partitions: dict[str, int]
    ordered_rows: int
    num_buckets: int
    cat_dtypes: tuple[str, ...]
    seed: int
    row_format: RowFormat = CRITEO

    @property
    def total_partitions(self) -> int:
        return sum(self.num_partitions.values())

    def split_of(self, partition: int) -> str:
        for split in reversed(SPLITS):
            if self.num_partitions[split] and partition >= self.first_partition[split]:
                return split
        raise ValueError(f"output partition {partition} out of range")

    def is_bucket(self, partition: int) -> bool:
        return self.num_buckets > 0 and partition < self.num_buckets


def plan_outputs(
    ranges: list[list[tuple[str, int, int]]],
    num_buckets: int,
    ordered_rows: int,
    cat_dtypes: tuple[str, ...],
    seed: int,
    row_format: RowFormat = CRITEO,
) -> OutputPlan:
    """Output partitions in file order and each unit's first row in every split."""
    split_rows = dict.fromkeys(SPLITS, 0)
    offsets = []
    for unit_ranges in ranges:
        offsets.append(dict(split_rows))
        for split, lo, hi in unit_ranges:
            split_rows[split] += hi - lo
    num_partitions = {s: -(-split_rows[s] // ordered_rows) for s in SPLITS}
    if num_buckets > 0:
        num_partitions["train"] = num_buckets
    first, base = {}, 0
    for split in SPLITS:
        first[split], base = base, base + num_partitions[split]
    return OutputPlan(
        ranges=tuple(tuple(r) for r in ranges),
        split_offsets=tuple(offsets),
        first_partition=first,
        num_partitions=num_partitions,
        ordered_rows=ordered_rows,
        num_buckets=num_buckets,
        cat_dtypes=cat_dtypes,
        seed=seed,
        row_format=row_format,
    )


_LOOKUP_CACHE: dict[str, list[VocabLookup]] = {}


def _lookups(key: str, lookups: list[tuple[np.ndarray, np.ndarray]]) -> list[VocabLookup]:
    """Per executor process: the lookups of a broadcast are built once, not once per unit."""
    if key not in _LOOKUP_CACHE:
        _LOOKUP_CACHE.clear()
        _LOOKUP_CACHE[key] = [VocabLookup(v, i) for v, i in lookups]
    return _LOOKUP_CACHE[key]


Key = tuple[int, int, int, int]
# Largest piece of records one shuffle element carries: PySpark's shuffle writer holds up
# to ~1000 elements before it spills, so this bounds an executor's memory (~6 MiB each).
PIECE_ROWS = 1 << 16


def _pieces(records: np.ndarray, key: tuple[int, int, int]) -> Iterator[tuple[Key, np.ndarray]]:
    """``records`` cut into pieces of at most ``PIECE_ROWS``, keyed in order."""
    for start in range(0, records.size, PIECE_ROWS):
        yield (*key, start), records[start : start + PIECE_ROWS]


def transform_unit(
    partition: int,
    elements: Iterator[tuple],
    plan: OutputPlan,
    lookups_key: str,
    lookups: object,
) -> Iterator[tuple[Key, np.ndarray]]:
    """Pass 2 of one unit: its records keyed by ``(output partition, sort keys...)``.

    Shuffled training rows: the piece of each bucket in each segment, keyed
    ``(bucket, unit, segment, row)``; a bucket then gathers its pieces in unit and
    segment order, as the local assembly does. Ordered rows: keyed by their
    split row, cut at the output partition boundaries.

    ``lookups`` is the broadcast of the per-table (sorted values, ids); its
    ``.value`` is read only here, on the executor.
    """
    tables = _lookups(lookups_key, lookups.value)
    dtype = plan.row_format.record_dtype([np.dtype(d) for d in plan.cat_dtypes])
    # Pass 1 kept each block at its own widths; pass 2 reads them at the hotness.
    blocks = (plan.row_format.widen(rows) for kind, _, rows in elements if kind == ROWS)
    offsets = dict(plan.split_offsets[partition])
    segment = 0
    for split, records, counts in unit_outputs(
        RowStream(blocks),
        plan.ranges[partition],
        tables,
        dtype,
        plan.num_buckets,
        plan.seed,
        partition,
        plan.row_format,
    ):
        if counts is not None:
            ends = np.cumsum(counts)
            for bucket in np.flatnonzero(counts).tolist():
                piece = records[ends[bucket] - counts[bucket] : ends[bucket]]
                key = (plan.first_partition[split] + bucket, partition, segment)
                yield from _pieces(piece, key)
            segment += 1
            continue
        lo = offsets[split]
        offsets[split] += records.size
        while records.size:
            part = lo // plan.ordered_rows
            take = min(records.size, (part + 1) * plan.ordered_rows - lo)
            yield from _pieces(records[:take], (plan.first_partition[split] + part, lo, 0))
            records, lo = records[take:], lo + take


def output_partition(key: Key) -> int:
    return key[0]


def finish_partition(
    partition: int, pieces: Iterator[tuple[tuple, np.ndarray]], plan: OutputPlan
) -> Iterator[tuple[int, np.ndarray]]:
    """Records of one output partition in their final order: a bucket is gathered and
    permuted as one array; an ordered range streams through, piece by piece."""
    if plan.is_bucket(partition):
        parts = [piece for _, piece in pieces]
        dtype = plan.row_format.record_dtype([np.dtype(d) for d in plan.cat_dtypes])
        rows = np.concatenate(parts) if parts else np.empty(0, dtype)
        yield partition, permute_bucket(rows, plan.seed, partition)
        return
    for _, piece in pieces:
        yield partition, piece
