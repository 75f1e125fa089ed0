"""Placement of the embedding tables within the per-rank memory budget."""

from __future__ import annotations

from absl import logging

from models.config import Config, ConfigError
from models.distributed.placement import (
    EMBEDDING_MEMORY_FRACTION,
    Placement,
    embedding_budget_bytes,
    embedding_table_bytes,
    plan_placement,
)
from models.training.optimizers import SparseOptimizer


def plan_tables(
    config: Config,
    cardinalities: tuple[int, ...],
    world: int,
    embedding_optimizer: SparseOptimizer,
) -> Placement:
    """Places the tables on ranks; within a per-rank budget when a memory limit is set.

    Runs before the model exists, so tables that cannot fit fail here and not
    at allocation. The budget (``embedding_budget_bytes``) counts the
    optimizer's slots in training; eval and inference hold the weights only.
    A table larger than the budget is split by rows over several ranks.
    """
    table_bytes = embedding_table_bytes(cardinalities, config.model.table_width)
    limit_gb = config.device.memory_limit_gb
    if limit_gb is None:
        return plan_placement(table_bytes, world)
    training = config.run.mode == "train"
    slots = len(embedding_optimizer.slot_initial_values) if training else 0
    budget = embedding_budget_bytes(limit_gb, slots)
    derivation = (
        f"--tf_mlu_memory_limit_gb={limit_gb} leaves each rank {budget} bytes of table "
        f"weights ({EMBEDDING_MEMORY_FRACTION:.0%} of the memory for the tables and their "
        f"{slots} optimizer slot(s) each)"
    )
    try:
        placement = plan_placement(table_bytes, world, budget, table_rows=list(cardinalities))
    except ValueError as error:
        raise ConfigError(
            f"the embedding tables do not fit: {error}\n{derivation}; raise the limit, use "
            "more ranks or lower --embedding_dim"
        ) from error
    if placement.split_tables:
        logging.info(
            "tables %s are larger than the per-rank budget: split by rows (%s)",
            list(placement.split_tables),
            derivation,
        )
    return placement
