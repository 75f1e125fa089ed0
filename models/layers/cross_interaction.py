"""The feature interaction of DCNv2: a cross network over all feature vectors."""

from __future__ import annotations

import keras
import tensorflow as tf

from models.layers.cross_network import CrossNetwork
from models.layers.features import (
    embedding_dim_of_shape,
    num_features_of_shape,
    stack_features,
)


@keras.saving.register_keras_serializable(package="dlrm")
class CrossInteraction(keras.layers.Layer):
    """Cross network over the concatenated bottom-MLP output and embeddings.

    The stacked structure of DCNv2 (Wang et al., 2021, arXiv:2008.13535) as
    used for Criteo by MLPerf and NVIDIA: ``x_0 = [bottom, e_0, ..., e_{F-1}]``
    flattened to ``[b, (F + 1) D]``, then :class:`CrossNetwork`; the deep (top)
    MLP follows in the model. It takes its inputs like
    :class:`~models.layers.DotInteraction`, so a model swaps one for the other.

    Args:
        num_layers: cross layers (3 in MLPerf's DCNv2).
        projection_dim: rank of the low-rank cross layers (512 in MLPerf's
            DCNv2); None for full rank.

    Shapes: ``bottom [b, D]``; ``embeddings`` one ``[b, F, D]`` tensor or
    pieces ``[b, D]`` / ``[b, k, D]`` in feature order ->
    ``[b, (F + 1) D]`` (3456 for D = 128, F = 26).

    Example:
        >>> layer = CrossInteraction(num_layers=2, projection_dim=4)
        >>> layer(keras.ops.ones((2, 4)), keras.ops.ones((2, 3, 4))).shape
        (2, 16)
    """

    def __init__(self, num_layers: int = 3, projection_dim: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cross = CrossNetwork(
            num_layers, projection_dim, dtype=self.dtype_policy, name="cross_network"
        )

    @property
    def num_layers(self) -> int:
        return self.cross.num_layers

    @property
    def projection_dim(self) -> int | None:
        return self.cross.projection_dim

    def build(self, bottom_shape, embeddings_shape) -> None:
        self.cross.build(self.compute_output_shape(bottom_shape, embeddings_shape))

    def call(self, bottom, embeddings):
        # [b, F+1, D]; [b, F, D] without a bottom MLP (bottom None).
        features = stack_features("CrossInteraction", bottom, embeddings, self.compute_dtype)
        width = features.shape[1] * features.shape[2]
        return self.cross(tf.reshape(features, [-1, width]))

    def compute_output_shape(self, bottom_shape, embeddings_shape):
        f = num_features_of_shape(embeddings_shape)
        if bottom_shape is None:  # no bottom MLP: the embeddings only
            return (None, f * embedding_dim_of_shape(embeddings_shape))
        return (bottom_shape[0], (f + 1) * bottom_shape[1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_layers=self.num_layers, projection_dim=self.projection_dim)
        return config
