"""DCNv2: the ranking model with a cross network as its interaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from models.layers import CrossInteraction
from models.ranking import RankingModel, positive_ints


@keras.saving.register_keras_serializable(package="dlrm")
class DCNv2(RankingModel):
    """Deep & Cross Network V2 (Wang et al., 2021, arXiv:2008.13535), stacked.

    Bottom MLP on the numerical features, one embedding table per categorical
    feature, then :class:`~models.layers.CrossInteraction`: cross layers on the
    concatenation of the bottom-MLP output and all F embeddings
    (``(F + 1) D`` wide), followed by the deep (top) MLP. This is the
    DLRM-DCNv2 of MLPerf's recommendation benchmark (3 cross layers of rank
    512, D = 128, deep MLP 1024-1024-512-256-1).

    Args:
        num_cross_layers: cross layers in the network.
        cross_layer_projection_dim: rank of the low-rank cross layers; None
            for full-rank layers (``((F + 1) D)^2`` weights each).
        Others: as :class:`~models.ranking.RankingModel`.
    """

    model_type = "dcnv2"

    def __init__(
        self,
        cardinalities: Sequence[int],
        embedding_dim: int = 128,
        bottom_mlp_dims: Sequence[int] = (512, 256, 128),
        top_mlp_dims: Sequence[int] = (1024, 1024, 512, 256, 1),
        num_numerical_features: int = 13,
        num_cross_layers: int = 3,
        cross_layer_projection_dim: int | None = 512,
        table_ids: Sequence[int] | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        (num_cross_layers,) = positive_ints("DCNv2", "num_cross_layers", (num_cross_layers,))
        if cross_layer_projection_dim is not None:
            (cross_layer_projection_dim,) = positive_ints(
                "DCNv2", "cross_layer_projection_dim", (cross_layer_projection_dim,)
            )
        super().__init__(
            cardinalities,
            CrossInteraction(num_cross_layers, cross_layer_projection_dim, name="interaction"),
            embedding_dim=embedding_dim,
            bottom_mlp_dims=bottom_mlp_dims,
            top_mlp_dims=top_mlp_dims,
            num_numerical_features=num_numerical_features,
            table_ids=table_ids,
            seed=seed,
            **kwargs,
        )
        self.num_cross_layers = num_cross_layers
        self.cross_layer_projection_dim = cross_layer_projection_dim

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_cross_layers": self.num_cross_layers,
            "cross_layer_projection_dim": self.cross_layer_projection_dim,
        }
