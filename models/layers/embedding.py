"""One embedding table stored in float32."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dlrm")
class EmbeddingTable(keras.layers.Layer):
    """A ``[num_rows, dim]`` table looked up by integer ids.

    The variable and the output are float32 under any dtype policy: tables are
    updated by sparse optimizers that need full-precision rows, and the dense
    part of the model casts the vectors to its compute dtype itself.
    Rows are initialised uniform in ``[-sqrt(1/num_rows), sqrt(1/num_rows)]``
    as the reference DLRM.

    Args:
        num_rows: number of rows (ids ``0 .. num_rows - 1``).
        dim: embedding dimension D.
        seed: seed of the initial rows; None draws from Keras' global generator.

    Shapes: ``ids [B]`` integer -> ``[B, D]`` float32. The gradient of the
    table is an ``IndexedSlices`` of the looked-up rows.
    """

    def __init__(self, num_rows: int, dim: int, seed: int | None = None, **kwargs) -> None:
        # The policy is float32 whatever the global policy is (see docstring).
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        for name, value in (("num_rows", num_rows), ("dim", dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"EmbeddingTable {name} must be a positive integer, got {value!r}")
        self.num_rows = num_rows
        self.dim = dim
        self.seed = seed
        limit = math.sqrt(1.0 / num_rows)
        self.embeddings = self.add_weight(
            shape=(num_rows, dim),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed),
            dtype="float32",
            name="embeddings",
        )

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
        return config
