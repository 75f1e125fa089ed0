"""The models of the family by name (``--model_type``), built from a model config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.dcnv2 import DCNv2
from models.dlrm import DLRM
from models.ranking import RankingModel

MODEL_TYPES: dict[str, type[RankingModel]] = {"dlrm": DLRM, "dcnv2": DCNv2}


def build_model(
    model: Any,
    cardinalities: Sequence[int],
    table_ids: Sequence[int] | None = None,
    seed: int | None = None,
    num_numerical_features: int | None = None,
    **tables: Any,
) -> RankingModel:
    """The model ``model.model_type`` names, with the dims of ``model``.

    Args:
        model: a model config (``models.config.ModelConfig``): ``model_type``,
            ``embedding_dim``, ``bottom_mlp_dims``, ``top_mlp_dims``,
            ``num_numerical_features`` and, for DCNv2, ``num_cross_layers`` and
            ``cross_layer_projection_dim`` (0: full-rank cross layers); ``dropout``
            and ``linear`` if it has them (0 and False otherwise).
        cardinalities: rows of each table.
        table_ids: the tables this process holds (None: all).
        seed: seed of the table initialisers.
        num_numerical_features: N from the data; None: ``model``'s.
        **tables: per-table settings of the data (``hotness``, ``combiners``),
            passed to the model as they are.
    """
    if model.model_type not in MODEL_TYPES:
        raise ValueError(
            f"model_type must be one of {sorted(MODEL_TYPES)}, got {model.model_type!r}"
        )
    common = dict(
        embedding_dim=model.embedding_dim,
        bottom_mlp_dims=model.bottom_mlp_dims,
        top_mlp_dims=model.top_mlp_dims,
        num_numerical_features=(
            model.num_numerical_features
            if num_numerical_features is None
            else num_numerical_features
        ),
        table_ids=table_ids,
        seed=seed,
        dropout=getattr(model, "dropout", 0.0),
        linear=getattr(model, "linear", False),
        **tables,
    )
    if model.model_type == "dcnv2":
        return DCNv2(
            cardinalities,
            num_cross_layers=model.num_cross_layers,
            cross_layer_projection_dim=model.cross_layer_projection_dim or None,
            **common,
        )
    return DLRM(cardinalities, **common)
