"""Lookups of row-split tables: route ids to their rows' ranks, gather, send back.

Shapes: ``b`` this rank's slice of the global batch ``B``, ``S`` split tables,
``D`` embedding dim, ``W`` world size.

A row-split table (larger than one rank's budget, held as row ranges by
several ranks) is looked up from each rank's own slice of the batch: its ids
are routed to the ranks holding their rows (all-to-all of ids), each owner
gathers its rows, and the vectors return by the reverse all-to-all
(:mod:`models.distributed.routing`)::

    ids of split tables [b, S] -route-> all-to-all -> local gather -> all-to-all back -> [b, S, D]

A multi-hot split table (``h`` id columns, padded with negative ids) sends
only its valid ids, and the requesting rank pools the vectors that come back
with the table's combiner (sum or mean over the bag, zeros for an empty bag),
as :func:`~models.layers.pooling.pooled_lookup` does for a whole table. The
exchange carries one id and one vector per valid id; padding never leaves the
rank, so it never reaches a row or an optimizer slot.

The backward pass runs the same exchange in reverse: the vectors' gradients
go back to the owners, and the local gather turns them into
``IndexedSlices`` of the owner's shard.
:class:`~models.distributed.hybrid.HybridParallel` runs this next to the
whole tables' exchange.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from models.distributed.comm import Communicator
from models.distributed.routing import SplitLayout, local_rows, route_ids, unroute


def check_split_model(model: Any, layout: SplitLayout, rank: int) -> None:
    """Refuses a model whose row ranges are not those ``layout`` gives ``rank``.

    Raises:
        ValueError: a rank holds several ranges of one table, or the model
            holds other rows than the placement says.
    """
    local_tables = [t for t, *_ in layout.local]
    held_twice = sorted({t for t in local_tables if local_tables.count(t) > 1})
    if held_twice:
        raise ValueError(f"rank {rank} holds several row ranges of tables {held_twice}")
    wrong = [
        (t, (start, end))
        for t, start, end, _ in layout.local
        if (model.tables[t].row_start, model.tables[t].row_end) != (start, end)
    ]
    if wrong:
        raise ValueError(
            f"rank {rank}: the placement gives it rows {wrong} (table, [start, end)) "
            "but its model holds other rows; build it with row_ranges=parallel.row_ranges"
        )


class RowSplitLookup:
    """Looks up a placement's split tables for this rank's slice (world size > 1).

    Args:
        model: the ranking model; holds this rank's row ranges as tables.
        comm: the communicator.
        layout: the split tables' virtual id space seen from ``comm.rank``.
        transport_dtype: dtype of the vectors in the all-to-all.
    """

    def __init__(
        self, model: Any, comm: Communicator, layout: SplitLayout, transport_dtype: tf.DType
    ) -> None:
        self.model = model
        self.comm = comm
        self.layout = layout
        self.transport_dtype = transport_dtype
        # Columns of a table row (D, plus the linear part's weight when the model has one).
        self.vector_width = int(getattr(model, "table_width", model.embedding_dim))
        hotness = getattr(model, "hotness", (1,) * model.num_tables)
        combiners = getattr(model, "combiners", ("sum",) * model.num_tables)
        self.hotness = tuple(int(hotness[t]) for t in layout.tables)
        self.combiners = tuple(combiners[t] for t in layout.tables)

    def __call__(self, ids: tf.Tensor) -> list[tf.Tensor]:
        """Vectors of the split tables for this rank's slice.

        Args:
            ids: ``[b, C]`` this rank's rows of the split tables' columns
                (``hotness`` columns per table, in split-table order).

        Returns:
            S tensors ``[b, D]`` in the transport dtype, in split-table order;
            a multi-hot table's bags pooled.
        """
        if all(h == 1 for h in self.hotness):
            return self._one_hot(ids)
        return self._pooled(ids)

    def _one_hot(self, ids: tf.Tensor) -> list[tf.Tensor]:
        """Every split table single-valued: one id per row and table, no pooling."""
        count = len(self.layout.tables)
        virtual = tf.cast(ids, tf.int64) + tf.constant(self.layout.bases, tf.int64)
        vectors = self._exchange(tf.reshape(virtual, [-1]))
        vectors = tf.reshape(vectors, [-1, count, self.vector_width])
        return tf.unstack(vectors, num=count, axis=1)

    def _pooled(self, ids: tf.Tensor) -> list[tf.Tensor]:
        """Some split table multi-hot: its valid ids only, pooled per bag on return."""
        count = len(self.layout.tables)
        rows = tf.shape(ids, out_type=tf.int64)[0]
        virtual, bags, valid_counts, column = [], [], [], 0
        for k, (h, base) in enumerate(zip(self.hotness, self.layout.bases, strict=True)):
            table_ids = ids[:, column : column + h]
            column += h
            if h == 1:  # single-valued: every id is a row (no padding)
                positions = tf.range(rows)
                valid = table_ids[:, 0]
                valid_counts.append(None)
            else:
                mask = table_ids >= 0
                where = tf.where(mask)  # row-major: a bag's ids in column order
                positions = where[:, 0]
                valid = tf.gather_nd(table_ids, where)
                valid_counts.append(tf.reduce_sum(tf.cast(mask, tf.float32), axis=1))
            virtual.append(tf.cast(valid, tf.int64) + base)
            # Bag index: (row, table) flattened row-major, as [b, S] would be.
            bags.append(positions * count + k)
        vectors = self._exchange(tf.concat(virtual, axis=0))
        # Pooled in float32, as a whole table's owner pools its float32 rows.
        pooled = tf.math.unsorted_segment_sum(
            tf.cast(vectors, tf.float32), tf.concat(bags, axis=0), rows * count
        )
        pooled = tf.unstack(tf.reshape(pooled, [-1, count, self.vector_width]), count, axis=1)
        out = []
        for vector, combiner, valid_count in zip(pooled, self.combiners, valid_counts, strict=True):
            if valid_count is not None and combiner == "mean":
                vector = vector / tf.maximum(valid_count, 1.0)[:, None]
            out.append(tf.cast(vector, self.transport_dtype))
        return out

    def _exchange(self, virtual: tf.Tensor) -> tf.Tensor:
        """``[n, D]`` vectors (transport dtype) of virtual ids ``[n]``, in their order."""
        routed = route_ids(
            virtual,
            tf.constant(self.layout.starts, tf.int64),
            tf.constant(self.layout.ranks, tf.int32),
            self.comm.size,
        )
        received, received_counts = self.comm.alltoall_with_splits(
            routed.ids, routed.counts, name="split_ids"
        )
        vectors = self._gather_local_rows(received)
        back = self.comm.alltoall(
            tf.cast(vectors, self.transport_dtype), received_counts, name="split_embeddings"
        )
        return unroute(back, routed.order)

    def _gather_local_rows(self, ids: tf.Tensor) -> tf.Tensor:
        """``[m, D]`` float32 rows of this rank's shards for virtual ``ids [m]``."""
        local = self.layout.local
        if not local:  # no shard here, so nothing was routed here
            return tf.zeros([0, self.vector_width], tf.float32)
        tables = [self.model.tables[t] for t, *_ in local]
        if len(local) == 1:
            return tables[0](ids - local[0][3])
        shard, rows = local_rows(ids, tf.constant([v for *_, v in local], tf.int64))
        positions = tf.dynamic_partition(tf.range(tf.size(ids)), shard, len(local))
        parts = tf.dynamic_partition(rows, shard, len(local))
        return tf.dynamic_stitch(
            positions, [table(part) for table, part in zip(tables, parts, strict=True)]
        )

    def alltoall_bytes_per_step(self, global_batch_size: int) -> int:
        """Most bytes all ranks send for the split tables in one training step.

        Each id of a split table crosses once as an int64 and its vector twice
        (forward and backward) when its row is on another rank; ids whose row
        is local stay. The bound assumes every id is remote and every bag of a
        multi-hot table full (``hotness`` ids per row; padding is not sent);
        the actual volume depends on how the batch's ids fall on the row ranges.
        """
        if self.comm.size == 1 or not self.layout.tables:
            return 0
        per_id = 8 + 2 * self.vector_width * self.transport_dtype.size
        return global_batch_size * sum(self.hotness) * per_id
