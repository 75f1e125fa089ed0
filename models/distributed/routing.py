"""Routing of embedding ids to the ranks holding their rows (row-wise sharding).

A table split by rows is held as contiguous row ranges by several ranks. All
split tables share one *virtual* id space: table ``t``'s id ``i`` becomes
``base[t] + i``, where the bases stack the split tables one after the other,
so one exchange serves every split table and one sorted array of shard starts
locates any id.

One lookup of the split tables, on every rank::

    ids of this rank's slice [n] --route_ids--> grouped by owner rank (+ counts)
      -all-to-all-> ids from every rank --local_rows--> (local shard, row) -> gather
      -all-to-all back (reverse splits)-> vectors grouped by owner --unroute--> [n, D]

The functions here are pure TensorFlow ops (graph-compatible, no
communication); :class:`SplitLayout` derives the virtual id space from a
:class:`~models.distributed.placement.Placement`, and
:class:`~models.distributed.row_split.RowSplitLookup` runs the exchanges.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from models.distributed.placement import Placement


def shard_index(ids: tf.Tensor, row_starts: tf.Tensor) -> tf.Tensor:
    """Index of the row range holding each id.

    Args:
        ids: ``[n]`` integer ids.
        row_starts: ``[K]`` first id of each range, ascending, ``row_starts[0] == 0``;
            range k is ``[row_starts[k], row_starts[k + 1])`` (the last one is
            unbounded here: ids beyond the table are the caller's to reject).

    Returns:
        ``[n]`` int32 in ``[0, K)``; an id equal to a range's start belongs to
        that range.
    """
    ids = tf.cast(ids, row_starts.dtype)
    return tf.searchsorted(row_starts, ids, side="right", out_type=tf.int32) - 1


@dataclass(frozen=True)
class RoutedIds:
    """Ids grouped by destination rank.

    Attributes:
        ids: ``[n]`` the input ids, those for rank 0 first, then rank 1, ...;
            within one rank in input order (a stable grouping).
        counts: ``[W]`` int32, how many ids go to each rank (the splits of the
            all-to-all).
        order: ``[n]`` int32 permutation: ``ids[k] == input[order[k]]``.
    """

    ids: tf.Tensor
    counts: tf.Tensor
    order: tf.Tensor


def route_ids(
    ids: tf.Tensor, row_starts: tf.Tensor, shard_ranks: tf.Tensor, world_size: int
) -> RoutedIds:
    """Groups ids by the rank that holds their row.

    Duplicate ids are routed once per occurrence (each occurrence gets its
    vector back and sends its own gradient; the owner's gather sums them).

    Args:
        ids: ``[n]`` integer ids (virtual ids for several split tables).
        row_starts: ``[K]`` ascending starts of the shards (see :func:`shard_index`).
        shard_ranks: ``[K]`` int32 rank holding each shard.
        world_size: W.
    """
    destination = tf.gather(shard_ranks, shard_index(ids, row_starts))
    order = tf.argsort(destination, stable=True)
    counts = tf.math.bincount(
        destination, minlength=world_size, maxlength=world_size, dtype=tf.int32
    )
    return RoutedIds(tf.gather(ids, order), counts, tf.cast(order, tf.int32))


def unroute(values: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    """Puts values received in routed order back into input order.

    ``values[k]`` belongs to input position ``order[k]`` (see :class:`RoutedIds`),
    so the result ``r`` has ``r[order[k]] == values[k]``. A scatter rather
    than a gather by the inverse permutation: its gradient is a dense gather,
    which the backward all-to-all can send as is.

    Args:
        values: ``[n, ...]`` in routed order.
        order: ``[n]`` the permutation of :func:`route_ids`.
    """
    return tf.scatter_nd(tf.expand_dims(order, 1), values, tf.shape(values))


def local_rows(ids: tf.Tensor, local_starts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Which local shard holds each received id, and the row inside it.

    Args:
        ids: ``[m]`` virtual ids routed to this rank (each inside one of its shards).
        local_starts: ``[L]`` ascending virtual first ids of this rank's shards.

    Returns:
        ``(shard [m] int32 in [0, L), row [m] of ids' dtype)`` with
        ``ids == local_starts[shard] + row``.
    """
    shard = shard_index(ids, local_starts)
    return shard, tf.cast(ids, local_starts.dtype) - tf.gather(local_starts, shard)


@dataclass(frozen=True)
class SplitLayout:
    """The virtual id space of a placement's split tables, seen from one rank.

    Attributes:
        tables: the split tables, ascending (S of them).
        bases: virtual id of row 0 of each split table (``tables`` order).
        starts: virtual first id of every shard of every split table, ascending.
        ranks: rank holding each shard (``starts`` order).
        local: this rank's shards as ``(table, row_start, row_end, virtual_start)``,
            ascending; at most one per table.
    """

    tables: tuple[int, ...]
    bases: tuple[int, ...]
    starts: tuple[int, ...]
    ranks: tuple[int, ...]
    local: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def from_placement(cls, placement: Placement, rank: int) -> SplitLayout:
        tables = placement.split_tables
        bases, starts, ranks, local = [], [], [], []
        base = 0
        for table in tables:
            shards = [s for s in placement.shards if s.table == table]
            bases.append(base)
            for s in shards:
                starts.append(base + s.row_start)
                ranks.append(s.rank)
                if s.rank == rank:
                    local.append((table, s.row_start, s.row_end, base + s.row_start))
            base += shards[-1].row_end
        return cls(tuple(tables), tuple(bases), tuple(starts), tuple(ranks), tuple(local))

    def row_range(self, table: int) -> tuple[int, int] | None:
        """This rank's rows ``[start, end)`` of split ``table``, or None."""
        for t, start, end, _ in self.local:
            if t == table:
                return start, end
        return None
