"""Hybrid parallelism: model-parallel embedding tables, data-parallel MLPs.

Shapes: ``B`` global batch, ``b`` this rank's slice of it (rows given by
:func:`models.data.slicing.batch_slice`), ``F`` tables, ``T`` tables this rank
owns, ``D`` embedding dim, ``N`` numerical features, ``W`` world size, ``C`` the id
columns of the tables a rank reads (the sum of their hotness; ``C = T`` when
no table is multi-hot).

One training step on every rank::

    categorical [B, C] -lookup-> [B, T, D] -all-to-all-> W pieces [b, T_r, D] -+
    numerical   [b, N] --------------------------------------------------------+-> dense_forward

A multi-hot table is pooled by its owner (``lookup`` returns one ``[B, D]``
vector per table), so the all-to-all carries pooled vectors, the same bytes
as for a single-valued table.

Row-split tables (larger than one rank's budget, held as row ranges by
several ranks) are looked up from each rank's own slice instead, by routing
their ids to the rows' owners (:mod:`models.distributed.row_split`). Every
rank therefore reads the split tables' columns (its slice of them) as well as
those of the whole tables it owns: :attr:`HybridParallel.input_tables`.

The backward pass runs the reverse all-to-all, so each owner receives the
gradient of its tables from every rank's slice and applies it locally
(embedding gradients are never allreduced). Dense gradients are averaged with
one grouped allreduce. World size 1 (:class:`~models.distributed.comm.LocalCommunicator`)
runs the same code except the exchange: its F lookups go to ``dense_forward``
as they are, since an all-to-all of one rank is the identity and the stack it
needs would be a wasted copy of the largest activation.

Transport precision: under a 16-bit compute policy the vectors cross the
all-to-all in that dtype (half the bytes). This changes no value: the dense
part casts the float32 vectors to its compute dtype first thing anyway, and
its gradient with respect to them is produced in that dtype too.

Loss convention: each rank differentiates the mean loss over its own ``b``
rows. :meth:`HybridParallel.forward` and :meth:`HybridParallel.reduce_gradients`
then return gradients equal to those of the mean loss over the whole global
batch in one process, also when the slices differ in size (short last batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from models.data.slicing import batch_slice
from models.distributed.comm import Communicator
from models.distributed.placement import Placement
from models.distributed.routing import SplitLayout
from models.distributed.row_split import RowSplitLookup, check_split_model

_HALF_DTYPES = (tf.float16, tf.bfloat16)


def slice_sizes(rows: tf.Tensor, world: int) -> tf.Tensor:
    """Rows of each rank's slice of a batch of ``rows``, as int32 ``[world]``.

    The graph-side twin of :func:`models.data.slicing.batch_slice` (the first
    ``rows % world`` ranks get one row more), for batch sizes only known at
    run time.
    """
    rows = tf.cast(rows, tf.int32)
    base, extra = rows // world, rows % world
    return base + tf.cast(tf.range(world) < extra, tf.int32)


def _scale_gradient(x: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Identity forward; multiplies the incoming gradient by ``scale``."""

    @tf.custom_gradient
    def scaled(value):
        return tf.identity(value), lambda dy: dy * tf.cast(scale, dy.dtype)

    return scaled(x)


class HybridParallel:
    """Runs a ranking model (DLRM, DCNv2) with tables placed on ranks by a :class:`Placement`.

    Args:
        model: exposes ``tables``, ``embedding_dim``, ``lookup(categorical,
            table_ids)``, ``dense_forward(numerical, embeddings)``,
            ``dense_variables`` (the ranking-model contract in DEVELOPERS.md).
        comm: the communicator; ``comm.size`` must equal the placement's world.
        placement: which rank owns which table, or which rows of a split
            table (the model holds the same ranges: ``row_ranges=`` of the model,
            see :attr:`row_ranges`).
        global_batch_size: B of a full training batch; used for the byte
            counts in the log and to reject larger batches.
    """

    def __init__(
        self, model: Any, comm: Communicator, placement: Placement, global_batch_size: int
    ) -> None:
        num_tables = model.num_tables
        if placement.world_size != comm.size:
            raise ValueError(
                f"placement is for {placement.world_size} ranks but the job has {comm.size}"
            )
        if placement.num_tables != num_tables:
            raise ValueError(
                f"placement covers {placement.num_tables} tables, the model has {num_tables}"
            )
        not_held = [t for t in placement.tables_per_rank[comm.rank] if model.tables[t] is None]
        if not_held:
            raise ValueError(
                f"rank {comm.rank} owns tables {not_held} but its model does not hold them; "
                "build the model with table_ids=placement.tables_per_rank[rank]"
            )
        layout = SplitLayout.from_placement(placement, comm.rank)
        check_split_model(model, layout, comm.rank)
        hotness = getattr(model, "hotness", (1,) * num_tables)
        if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int):
            raise ValueError(f"global_batch_size must be an integer, got {global_batch_size!r}")
        if global_batch_size < comm.size:
            raise ValueError(
                f"global_batch_size {global_batch_size} is smaller than the world size "
                f"{comm.size}: some rank would get no rows"
            )
        self.model = model
        self.comm = comm
        self.placement = placement
        self.global_batch_size = global_batch_size
        # Columns of a table row (D, plus the linear part's weight when the model has one).
        self.vector_width = int(getattr(model, "table_width", model.embedding_dim))
        compute_dtype = tf.as_dtype(getattr(model, "compute_dtype", None) or tf.float32)
        self.transport_dtype = compute_dtype if compute_dtype in _HALF_DTYPES else tf.float32
        self.owned_tables: tuple[int, ...] = placement.tables_per_rank[comm.rank]
        self._split = layout
        self._split_lookup = RowSplitLookup(model, comm, layout, self.transport_dtype)
        split = set(layout.tables)
        whole_per_rank = [
            tuple(t for t in tables if t not in split) for tables in placement.tables_per_rank
        ]
        self._whole_tables = whole_per_rank[comm.rank]
        self._hotness = tuple(hotness)
        self._whole_columns = sum(hotness[t] for t in self._whole_tables)
        self._tables_per_rank = [len(t) for t in whole_per_rank]
        # After the all-to-all the whole tables arrive grouped by owner (rank 0's,
        # then rank 1's, ...), the split ones after them; this permutation
        # restores table order.
        arrival = [t for tables in whole_per_rank for t in tables] + list(layout.tables)
        self._to_table_order = [arrival.index(t) for t in range(num_tables)]
        self._identity_order = self._to_table_order == list(range(num_tables))

    @property
    def input_tables(self) -> tuple[int, ...]:
        """Tables whose id columns this rank reads, in column order of ``categorical``.

        The whole tables it owns (ascending), then every split table: a split
        table's ids are routed from each rank's own slice of the batch.
        """
        return self._whole_tables + self._split.tables

    @property
    def row_ranges(self) -> dict[int, tuple[int, int]]:
        """Rows ``(start, end)`` this rank holds of each split table it has a shard of."""
        return self.placement.row_ranges(self.comm.rank)

    def forward(
        self, numerical: tf.Tensor, categorical: tf.Tensor, training: bool = False
    ) -> tf.Tensor:
        """Logits for this rank's slice of the global batch.

        Args:
            numerical: ``[b, N]`` float, this rank's slice.
            categorical: ``[B, C]`` int32, the ids of :attr:`input_tables`
                (in that order, ``hotness`` columns per table) for the whole
                global batch.
            training: a training step: the MLPs apply their dropout (if any).

        Returns:
            ``[b, 1]`` float32 logits. Their gradient is weighted by
            ``W * b / B`` on the way back, so that with :meth:`reduce_gradients`
            the gradients are those of the global-batch mean loss even when
            the slices differ in size (the weight is 1 when they are equal).
        """
        world = self.comm.size
        columns = sum(self._hotness[t] for t in self.input_tables)
        if len(categorical.shape) != 2 or categorical.shape[1] not in (None, columns):
            raise ValueError(
                f"rank {self.comm.rank} reads the ids of tables {list(self.input_tables)}: "
                f"categorical must be [B, {columns}] (their hotness summed), "
                f"got shape {categorical.shape}"
            )
        if categorical.shape[0] is not None and categorical.shape[0] > self.global_batch_size:
            raise ValueError(
                f"batch of {categorical.shape[0]} rows exceeds global_batch_size "
                f"{self.global_batch_size}"
            )
        rows = tf.shape(categorical)[0]
        sizes = slice_sizes(rows, world)
        local_rows = sizes[self.comm.rank]
        tf.debugging.assert_equal(
            tf.shape(numerical)[0],
            local_rows,
            message=f"rank {self.comm.rank}: numerical rows must be this rank's slice of the "
            "global batch (models.data.slicing.batch_slice)",
        )

        if world == 1:
            # Nothing to exchange: the lookups go to the model as pieces, in
            # table order, and the interaction assembles them with the bottom
            # MLP output in one copy (no stack here, no all-to-all).
            lookups = self.model.lookup(categorical, self.owned_tables)
            embeddings = [lookups[i] for i in self._to_table_order]
        else:
            whole = self._whole_columns
            embeddings = []
            if sum(self._tables_per_rank):
                embeddings += self._exchange(
                    categorical[:, :whole], len(self._whole_tables), rows, sizes, local_rows
                )
            if self._split.tables:
                start = tf.reduce_sum(sizes[: self.comm.rank])
                embeddings += self._split_lookup(categorical[start : start + local_rows, whole:])
            if not self._identity_order:
                embeddings = [embeddings[i] for i in self._to_table_order]

        logits = self.model.dense_forward(numerical, embeddings, training=training)
        if world == 1:
            return logits
        weight = tf.cast(world * local_rows, tf.float32) / tf.cast(rows, tf.float32)
        return _scale_gradient(logits, weight)

    def _exchange(
        self,
        categorical: tf.Tensor,
        owned: int,
        rows: tf.Tensor,
        sizes: tf.Tensor,
        local_rows: tf.Tensor,
    ) -> list[tf.Tensor]:
        """Looks up the owned tables and all-to-alls the vectors (world size > 1).

        Returns this rank's slice of every whole table's vectors, in arrival
        order (rank 0's tables first), as pieces for the interaction to
        concatenate: one ``[b, k, D]`` block per sending rank when the ranks
        own consecutive tables (no reordering needed), else one ``[b, D]``
        vector per table.
        """
        dim = self.vector_width
        if owned:
            # Each vector is cast before the stack, not the stacked tensor after:
            # the same values, but the stack (and its Unpack gradient) then moves
            # 16-bit rows under a 16-bit policy, half the bytes.
            lookups = self.model.lookup(categorical, self._whole_tables)
            vectors = tf.stack([tf.cast(v, self.transport_dtype) for v in lookups], axis=1)
        else:
            vectors = tf.zeros([rows, 0, dim], self.transport_dtype)
        # Rows are contiguous per destination rank, so the flattened [B, T, D]
        # tensor splits into one contiguous chunk per rank. Flat because ranks
        # own different numbers of tables (Horovod wants equal trailing dims).
        received = self.comm.alltoall(
            tf.reshape(vectors, [-1]), sizes * (owned * dim), name="hybrid_embeddings"
        )
        chunks = tf.split(received, local_rows * tf.constant(self._tables_per_rank) * dim)
        pieces = [
            tf.reshape(chunk, [local_rows, count, dim])
            for chunk, count in zip(chunks, self._tables_per_rank, strict=True)
            if count
        ]
        if self._identity_order:
            return pieces
        # Per-table vectors (one strided copy), reordered for free by the
        # caller: cheaper than a concatenation and a gather along the table
        # axis before the interaction's own concatenation.
        return [vector for piece in pieces for vector in tf.unstack(piece, axis=1)]

    def reduce_gradients(
        self, embedding_grads: Sequence[Any], dense_grads: Sequence[Any]
    ) -> tuple[list[Any], list[Any]]:
        """Turns per-rank gradients into global-batch gradients.

        Args:
            embedding_grads: gradients of the owned tables' variables (dense
                tensors, ``IndexedSlices`` or None), from the loss of
                :meth:`forward`'s logits.
            dense_grads: gradients of the dense variables, same order on every
                rank (None entries are kept as None and not communicated).

        Returns:
            ``(embedding_grads, dense_grads)``: embedding gradients scaled by
            ``1/W`` (the reverse all-to-all already summed every rank's
            contribution), dense gradients averaged over ranks with one grouped
            allreduce.
        """
        world = self.comm.size
        if world == 1:
            return list(embedding_grads), list(dense_grads)
        scale = 1.0 / world
        scaled = []
        for grad in embedding_grads:
            if isinstance(grad, tf.IndexedSlices):
                grad = tf.IndexedSlices(grad.values * scale, grad.indices, grad.dense_shape)
            elif grad is not None:
                grad = grad * scale
            scaled.append(grad)
        present = [i for i, g in enumerate(dense_grads) if g is not None]
        reduced = self.comm.grouped_allreduce(
            [tf.convert_to_tensor(dense_grads[i]) for i in present],
            average=True,
            name="dense_gradients",
        )
        averaged: list[Any] = list(dense_grads)
        for i, value in zip(present, reduced, strict=True):
            averaged[i] = value
        return scaled, averaged

    def mean_across_ranks(self, value: tf.Tensor, weight: tf.Tensor | None = None) -> tf.Tensor:
        """Mean of a per-rank float value over ranks, optionally weighted.

        With ``weight`` = this rank's number of rows and ``value`` its mean
        loss, the result is the exact mean loss of the global batch.
        """
        value = tf.cast(value, tf.float32)
        if self.comm.size == 1:
            return value  # also spares the rounding of value * weight / weight
        if weight is None:
            return self.comm.grouped_allreduce([value], average=True, name="mean_across_ranks")[0]
        weight = tf.cast(weight, tf.float32)
        # A rank with no rows in a short last batch has a NaN mean; it weighs 0.
        weighted = tf.where(weight > 0, value * weight, 0.0)
        total, count = self.comm.grouped_allreduce(
            [weighted, weight], average=False, name="weighted_mean_across_ranks"
        )
        return total / count

    def share_from_rank0(self, value: float | None) -> float | None:
        """Rank 0's ``value`` on every rank (None stays None); every rank calls it.

        A sum over ranks of float64 values where only rank 0's is not 0.0:
        exact, so every rank holds the very same float and takes the same
        decision from it (early stopping, the best checkpoint).
        """
        if self.comm.size == 1:
            return value
        mine = value if self.comm.rank == 0 and value is not None else 0.0
        present = 1.0 if self.comm.rank == 0 and value is not None else 0.0
        total, count = self.comm.grouped_allreduce(
            [tf.constant(mine, tf.float64), tf.constant(present, tf.float64)],
            average=False,
            name="share_from_rank0",
        )
        return float(total.numpy()) if float(count.numpy()) > 0 else None

    def gather_predictions(
        self, predictions: tf.Tensor, labels: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Gathers one evaluation batch's predictions and labels from all ranks.

        Call it once per evaluation batch: the slices are contiguous and
        gathered in rank order, so the result is the batch in its global row
        order (gathering after the loop would interleave batches).

        Args:
            predictions: ``[b, 1]`` (or ``[b]``) this rank's slice.
            labels: same shape.

        Returns:
            ``(predictions [B, 1], labels [B, 1])`` float32 on every rank.
        """
        both = tf.concat(
            [
                tf.reshape(tf.cast(predictions, tf.float32), [-1, 1]),
                tf.reshape(tf.cast(labels, tf.float32), [-1, 1]),
            ],
            axis=1,
        )
        gathered = self.comm.allgather(both, name="gather_predictions")
        return gathered[:, :1], gathered[:, 1:]

    def broadcast_dense_variables(self) -> None:
        """Copies rank 0's dense (MLP) variables to every rank, before training."""
        self.comm.broadcast_variables(self.model.dense_variables, root_rank=0)

    @property
    def owned_embedding_variables(self) -> list[Any]:
        """Variables of the owned tables, in :attr:`owned_tables` order."""
        variables = self.model.embedding_variables
        return [variables[t] for t in self.owned_tables]

    @property
    def all_tables_bytes(self) -> int:
        return self.placement.total_bytes

    @property
    def local_tables_bytes(self) -> int:
        return self.placement.bytes_per_rank[self.comm.rank]

    def alltoall_bytes_per_step(self) -> int:
        """Bytes all ranks send in the whole tables' all-to-alls of one training step.

        Forward plus backward (the same amount), in :attr:`transport_dtype`,
        excluding the chunk each rank keeps for itself.
        """
        world, dim = self.comm.size, self.vector_width
        total = 0
        for sender, count in enumerate(self._tables_per_rank):
            for receiver in range(world):
                if receiver != sender:
                    rows = batch_slice(self.global_batch_size, receiver, world)[1]
                    total += rows * count * dim * self.transport_dtype.size
        return 2 * total

    def split_alltoall_bytes_per_step(self) -> int:
        """Most bytes all ranks send for the split tables in one training step.

        See :meth:`RowSplitLookup.alltoall_bytes_per_step`.
        """
        return self._split_lookup.alltoall_bytes_per_step(self.global_batch_size)

    def describe(self) -> str:
        """Placement and communication volume, for the start-of-run log."""
        text = (
            f"{self.placement.describe()}\n"
            f"all-to-all: {self.alltoall_bytes_per_step()} bytes per step over all ranks "
            f"(global batch {self.global_batch_size}, forward + backward, "
            f"{self.transport_dtype.name} vectors)"
        )
        if self._split.tables:
            text += (
                f"\nsplit tables {list(self._split.tables)}: ids routed to their rows' ranks, "
                f"at most {self.split_alltoall_bytes_per_step()} bytes per step"
            )
        return text
