"""DLRM: the ranking model with the pairwise dot-product interaction."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from models.layers import DotInteraction
from models.ranking import RankingModel


@keras.saving.register_keras_serializable(package="dlrm")
class DLRM(RankingModel):
    """Deep Learning Recommendation Model (Naumov et al., 2019, arXiv:1906.00091).

    Bottom MLP on the numerical features, one embedding table per categorical
    feature, :class:`~models.layers.DotInteraction` (the bottom-MLP output and
    the dot products of every pair of the F + 1 vectors), top MLP. The
    arguments and the rest of the interface are those of
    :class:`~models.ranking.RankingModel`.
    """

    model_type = "dlrm"

    def __init__(
        self,
        cardinalities: Sequence[int],
        embedding_dim: int = 128,
        bottom_mlp_dims: Sequence[int] = (512, 256, 128),
        top_mlp_dims: Sequence[int] = (1024, 1024, 512, 256, 1),
        num_numerical_features: int = 13,
        table_ids: Sequence[int] | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            cardinalities,
            DotInteraction(name="interaction"),
            embedding_dim=embedding_dim,
            bottom_mlp_dims=bottom_mlp_dims,
            top_mlp_dims=top_mlp_dims,
            num_numerical_features=num_numerical_features,
            table_ids=table_ids,
            seed=seed,
            **kwargs,
        )
