"""What a checkpoint saves and restores, and the views of it save and restore share."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from models.training.checkpoint.layout import LEGACY_MODEL_TYPE, MODEL_DIM_KEYS, OPTIONAL_DIM_KEYS


class Communicator(Protocol):
    """The part of ``models.distributed`` communicators that checkpoints use."""

    @property
    def rank(self) -> int: ...

    @property
    def size(self) -> int: ...

    def barrier(self) -> None: ...


class EmbeddingOptimizer(Protocol):
    """The sparse optimizer of the embedding tables."""

    iterations: Any

    def slots_for(self, variable: Any) -> Mapping[str, Any]: ...


@dataclasses.dataclass
class TrainingState:
    """What a checkpoint saves and restores.

    Attributes:
        model: a ``DLRM`` or ``DCNv2`` (``get_config``, ``embedding_variables``,
            ``dense_variables``).
        owned_tables: the table ids this rank owns (all tables on one rank),
            whole or some rows of them.
        row_ranges: rows ``(start, end)`` held of each owned table split by
            rows (the model's ``row_ranges``); other owned tables are whole.
        embedding_optimizer: sparse optimizer of the tables; None in eval and
            inference, where only weights are restored.
        dense_optimizer: Keras optimizer of the dense variables; None as above.
        step: global training step.
        epoch: data position: epoch being read.
        batch: data position: next batch of that epoch.
        global_batch_size: rows per step of the run (None: not a training
            run). Saved with the data position: a batch index means other
            rows under another batch size, so resuming mid-epoch with a
            different one is refused.
        model_config: the run's model configuration (JSON-compatible), saved
            as ``model_config`` so that eval, inference and export can rebuild
            the model from the checkpoint alone (``models/run/checkpoint_model.py``).
        loss_scale: the dynamic loss scale of a float16 run
            (`StepGuard.scale_state`), saved as ``loss_scale``; set from the
            checkpoint on restore (None when it has none).
        best: the run's best evaluation so far and patience count
            (`BestSoFar.record`), saved as ``best``; set from the checkpoint on
            restore (None when it has none).
    """

    model: Any
    owned_tables: Sequence[int]
    embedding_optimizer: EmbeddingOptimizer | None = None
    dense_optimizer: Any = None
    step: int = 0
    epoch: int = 0
    batch: int = 0
    global_batch_size: int | None = None
    model_config: Mapping[str, Any] | None = None
    row_ranges: Mapping[int, tuple[int, int]] = dataclasses.field(default_factory=dict)
    loss_scale: Mapping[str, Any] | None = None
    best: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`restore_checkpoint` found."""

    path: Path
    step: int
    epoch: int
    batch: int
    world_size: int
    format_version: int


def rank_and_size(comm: Communicator) -> tuple[int, int]:
    """``(rank, size)`` of ``comm``, checked to be consistent."""
    rank, size = int(comm.rank), int(comm.size)
    if not 0 <= rank < size:
        raise ValueError(f"communicator rank {rank} outside world size {size}")
    return rank, size


def optimizer_name(optimizer: Any) -> str | None:
    """The name recorded for an optimizer (wrapper and inner class), None for none."""
    if optimizer is None:
        return None
    inner = getattr(optimizer, "inner_optimizer", None)
    name = type(optimizer).__name__
    return f"{name}({type(inner).__name__})" if inner is not None else name


def model_dims(model: Any) -> dict[str, Any]:
    """The model type and dimensions a checkpoint records and a restore compares."""
    config = model.get_config()
    missing = [k for k in MODEL_DIM_KEYS if k not in config]
    if missing:
        raise ValueError(f"model config lacks {missing}; got keys {sorted(config)}")
    dims = {"model_type": config.get("model_type", LEGACY_MODEL_TYPE)}
    dims.update({k: config[k] for k in MODEL_DIM_KEYS})
    for key in ("bottom_mlp_dims", "top_mlp_dims", "cardinalities"):
        dims[key] = [int(v) for v in dims[key]]
    dims.update({k: config[k] for k in OPTIONAL_DIM_KEYS if k in config})
    return dims


def sorted_tables(owned: Sequence[int], num_tables: int) -> list[int]:
    """``owned`` sorted, checked to be distinct table ids of the model."""
    tables = sorted(int(t) for t in owned)
    bad = [t for t in tables if not 0 <= t < num_tables]
    if bad or len(set(tables)) != len(tables):
        raise ValueError(f"owned_tables {list(owned)} must be distinct ids in [0, {num_tables})")
    return tables


def embedding_slots(optimizer: EmbeddingOptimizer | None, variable: Any) -> dict[str, Any]:
    """The optimizer slots of one table by name (created if not yet); none without optimizer."""
    if optimizer is None:
        return {}
    if hasattr(optimizer, "build"):
        # Slots are created on first use; a fresh run restoring them has none yet.
        optimizer.build([variable])
    return dict(optimizer.slots_for(variable))


def dense_groups(state: TrainingState, build: bool) -> dict[str, list]:
    """The dense variables and dense-optimizer variables, by checkpoint directory."""
    groups = {"dense": list(state.model.dense_variables)}
    optimizer = state.dense_optimizer
    if optimizer is not None:
        if build and not optimizer.built:
            # A fresh optimizer has only its iteration counter until built.
            optimizer.build(groups["dense"])
        groups["dense_optimizer"] = list(optimizer.variables)
    return groups
