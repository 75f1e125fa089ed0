"""One embedding table, or one row range of it, stored in float32."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

# Initial rows are drawn in blocks of this many rows, block k from the seed
# (table seed, k): any row range of a table then gets exactly the rows the
# whole table has, while generating at most one block beyond its own rows.
INIT_BLOCK_ROWS = 1 << 16


def initial_rows(
    num_rows: int, dim: int, seed: int, row_start: int, row_end: int, limit: float
) -> list[tuple[int, tf.Tensor]]:
    """Initial values of rows ``[row_start, row_end)`` of a ``[num_rows, dim]`` table.

    Uniform in ``[-limit, limit]``; row ``i`` depends only on ``(seed, i,
    num_rows, dim)``, not on the range asked for.

    Returns:
        ``(first local row, block)`` pairs covering the range in order, each
        block ``[rows, dim]`` float32 (one block of at most
        :data:`INIT_BLOCK_ROWS` rows at a time, so a caller can assign them
        without holding the whole range twice).
    """
    pieces = []
    for block in range(row_start // INIT_BLOCK_ROWS, math.ceil(row_end / INIT_BLOCK_ROWS)):
        lo = block * INIT_BLOCK_ROWS
        hi = min(lo + INIT_BLOCK_ROWS, num_rows)
        start, end = max(row_start, lo), min(row_end, hi)
        values = tf.random.stateless_uniform(
            [end - lo, dim], seed=[seed, block], minval=-limit, maxval=limit
        )
        pieces.append((start - row_start, values[start - lo :]))
    return pieces


@keras.saving.register_keras_serializable(package="dlrm")
class EmbeddingTable(keras.layers.Layer):
    """A ``[num_rows, dim]`` table looked up by integer ids, or rows ``[row_start, row_end)`` of it.

    The variable and the output are float32 under any dtype policy: tables are
    updated by sparse optimizers that need full-precision rows, and the dense
    part of the model casts the vectors to its compute dtype itself.
    Rows are initialised uniform in ``[-sqrt(1/num_rows), sqrt(1/num_rows)]``
    as the reference DLRM, in seeded blocks of rows (:func:`initial_rows`), so
    a row range holds exactly the initial rows of the whole table.

    Args:
        num_rows: rows of the whole table (ids ``0 .. num_rows - 1``).
        dim: embedding dimension D.
        seed: seed of the initial rows; None draws one from Keras' global
            generator.
        row_start, row_end: the rows this layer holds (default: all). A
            row-split table is held as such ranges by several model-parallel
            ranks; its variable is ``[row_end - row_start, D]``.

    Shapes: ``ids [B]`` integer -> ``[B, D]`` float32, where ids are rows of
    the variable (``table id - row_start``). The gradient of the table is an
    ``IndexedSlices`` of the looked-up rows.
    """

    def __init__(
        self,
        num_rows: int,
        dim: int,
        seed: int | None = None,
        row_start: int = 0,
        row_end: int | None = None,
        **kwargs,
    ) -> None:
        # The policy is float32 whatever the global policy is (see docstring).
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        for name, value in (("num_rows", num_rows), ("dim", dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"EmbeddingTable {name} must be a positive integer, got {value!r}")
        row_end = num_rows if row_end is None else row_end
        if not 0 <= row_start < row_end <= num_rows:
            raise ValueError(
                f"EmbeddingTable rows [{row_start}, {row_end}) are not a non-empty range of "
                f"its {num_rows} rows"
            )
        self.num_rows = num_rows
        self.dim = dim
        self.seed = seed
        self.row_start, self.row_end = row_start, row_end
        self.embeddings = self.add_weight(
            shape=(row_end - row_start, dim),
            initializer="zeros",
            dtype="float32",
            name="embeddings",
        )
        if seed is None:
            seed = int(keras.random.randint((), 0, 2**31 - 1))
        for first, block in initial_rows(
            num_rows, dim, seed, row_start, row_end, math.sqrt(1.0 / num_rows)
        ):
            self.embeddings.value[first : first + block.shape[0]].assign(block)

    @property
    def is_row_range(self) -> bool:
        """True when this layer holds only part of the table's rows."""
        return (self.row_start, self.row_end) != (0, self.num_rows)

    def call(self, ids):
        if len(ids.shape) != 1:
            raise ValueError(f"EmbeddingTable expects ids of shape [B], got shape {ids.shape}")
        # Gathering from the tf.Variable itself makes the gradient IndexedSlices.
        return tf.gather(self.embeddings.value, ids)

    def compute_output_shape(self, ids_shape):
        return (*tuple(ids_shape), self.dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_rows=self.num_rows, dim=self.dim, seed=self.seed)
        if self.is_row_range:
            config.update(row_start=self.row_start, row_end=self.row_end)
        return config
