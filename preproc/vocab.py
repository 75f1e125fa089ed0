"""Value counts, vocabularies and the value -> id lookup.

Ids: values counted at least ``threshold`` times get 1..N in descending count
order, ties broken by ascending value; id 0 is shared by missing and rarer
values.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

# Reduce the pending per-unit counts once they hold this many entries (or as
# many as the running total): keeps merge memory proportional to the distinct values.
_MERGE_ENTRIES = 1 << 22


def reduce_counts(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums ``counts`` of equal ``values``; returns sorted unique values and int64 totals."""
    if values.size == 0:
        return values.astype(np.uint32), counts.astype(np.int64)
    order = np.argsort(values, kind="stable")
    values = values[order]
    counts = counts[order].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return values[starts], np.add.reduceat(counts, starts)


def merge_counts(
    parts: Iterable[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Merges (sorted values, counts) pairs, reducing as it goes to bound memory."""
    total_v = np.zeros(0, np.uint32)
    total_c = np.zeros(0, np.int64)
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    pending_entries = 0
    for values, counts in parts:
        pending.append((values, counts))
        pending_entries += values.size
        if pending_entries >= max(_MERGE_ENTRIES, total_v.size):
            total_v, total_c = reduce_counts(
                np.concatenate([total_v, *(v for v, _ in pending)]),
                np.concatenate([total_c, *(c for _, c in pending)]),
            )
            pending, pending_entries = [], 0
    if pending:
        total_v, total_c = reduce_counts(
            np.concatenate([total_v, *(v for v, _ in pending)]),
            np.concatenate([total_c, *(c for _, c in pending)]),
        )
    return total_v, total_c


def build_vocab(
    values: np.ndarray, counts: np.ndarray, threshold: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vocabulary of one column from its merged counts.

    Args:
        values: sorted unique uint32 values.
        counts: their counts.
        threshold: minimum count to get an id.

    Returns:
        ``(vocab, sorted_values, sorted_ids)``: ``vocab[k]`` has id ``k + 1``;
        ``sorted_values`` ascending with their int32 ids, for ``lookup``.
    """
    keep = counts >= max(threshold, 1)
    kept_values, kept_counts = values[keep], counts[keep]
    order = np.lexsort((kept_values, -kept_counts))
    ids = np.empty(kept_values.size, np.int32)
    ids[order] = np.arange(1, kept_values.size + 1, dtype=np.int32)
    return kept_values[order].astype(np.uint32), kept_values.astype(np.uint32), ids


def lookup(
    sorted_values: np.ndarray, sorted_ids: np.ndarray, values: np.ndarray, missing: np.ndarray
) -> np.ndarray:
    """int32 ids of ``values``; 0 for missing and out-of-vocabulary values."""
    if sorted_values.size == 0:
        return np.zeros(values.shape, np.int32)
    position = np.minimum(np.searchsorted(sorted_values, values), sorted_values.size - 1)
    found = (sorted_values[position] == values) & ~missing
    return np.where(found, sorted_ids[position], 0).astype(np.int32)


# Vocabularies up to this size are looked up through a hash index (5-10x faster
# than binary search); larger ones by binary search over the memory-mapped
# sorted values, whose pages the workers share instead of each holding a table.
HASH_LOOKUP_MAX = 1 << 20


class VocabLookup:
    """value -> id of one table (see ``lookup``)."""

    def __init__(
        self, sorted_values: np.ndarray, sorted_ids: np.ndarray, hash_max: int = HASH_LOOKUP_MAX
    ) -> None:
        self.sorted_values = sorted_values
        self.sorted_ids = sorted_ids
        self.index = None
        if 0 < sorted_values.size <= hash_max:
            self.index = pd.Index(np.asarray(sorted_values))
            # get_indexer gives -1 for unknown values: index -1 of this array is their id 0.
            self.ids_then_zero = np.append(np.asarray(sorted_ids, np.int32), np.int32(0))

    def __call__(self, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
        if self.index is None:
            return lookup(self.sorted_values, self.sorted_ids, values, missing)
        ids = self.ids_then_zero[self.index.get_indexer(values)]
        ids[missing] = 0
        return ids
