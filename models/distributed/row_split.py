"""Lookups of row-split tables: route ids to their rows' ranks, gather, send back.

Shapes: ``b`` this rank's slice of the global batch ``B``, ``S`` split tables,
``D`` embedding dim, ``W`` world size.

A row-split table (larger than one rank's budget, held as row ranges by
several ranks) is looked up from each rank's own slice of the batch: its ids
are routed to the ranks holding their rows (all-to-all of ids), each owner
gathers its rows, and the vectors return by the reverse all-to-all
(:mod:`models.distributed.routing`)::

    ids of split tables [b, S] -route-> all-to-all -> local gather -> all-to-all back -> [b, S, D]

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
        ValueError: a split table is multi-hot, a rank holds several ranges of
            one table, or the model holds other rows than the placement says.
    """
    hotness = getattr(model, "hotness", (1,) * model.num_tables)
    multi_hot_split = [t for t in layout.tables if hotness[t] != 1]
    if multi_hot_split:
        raise ValueError(
            f"tables {multi_hot_split} are multi-hot (hotness "
            f"{[hotness[t] for t in multi_hot_split]}) and split by rows over ranks; "
            "row-split tables take one id per row: give the ranks enough memory "
            "(--tf_mlu_memory_limit_gb) to hold them whole"
        )
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
        self.embedding_dim = int(model.embedding_dim)

    def __call__(self, ids: tf.Tensor) -> list[tf.Tensor]:
        """Vectors of the split tables for this rank's slice.

        Args:
            ids: ``[b, S]`` this rank's rows of the split tables' columns.

        Returns:
            S tensors ``[b, D]`` in the transport dtype, in split-table order.
        """
        layout, dim = self.layout, self.embedding_dim
        count = len(layout.tables)
        virtual = tf.cast(ids, tf.int64) + tf.constant(layout.bases, tf.int64)
        routed = route_ids(
            tf.reshape(virtual, [-1]),
            tf.constant(layout.starts, tf.int64),
            tf.constant(layout.ranks, tf.int32),
            self.comm.size,
        )
        received, received_counts = self.comm.alltoall_with_splits(
            routed.ids, routed.counts, name="split_ids"
        )
        vectors = self._gather_local_rows(received)
        back = self.comm.alltoall(
            tf.cast(vectors, self.transport_dtype), received_counts, name="split_embeddings"
        )
        vectors = tf.reshape(unroute(back, routed.order), [-1, count, dim])
        return tf.unstack(vectors, num=count, axis=1)

    def _gather_local_rows(self, ids: tf.Tensor) -> tf.Tensor:
        """``[m, D]`` float32 rows of this rank's shards for virtual ``ids [m]``."""
        local = self.layout.local
        if not local:  # no shard here, so nothing was routed here
            return tf.zeros([0, self.embedding_dim], tf.float32)
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
        is local stay. The bound assumes every id is remote; the actual volume
        depends on how the batch's ids fall on the row ranges.
        """
        if self.comm.size == 1 or not self.layout.tables:
            return 0
        per_id = 8 + 2 * self.embedding_dim * self.transport_dtype.size
        return global_batch_size * len(self.layout.tables) * per_id
