"""The model as placed on this rank: built, then restored or synchronised."""

from __future__ import annotations

import keras

from models.config import Config
from models.distributed.comm import Communicator
from models.distributed.hybrid import HybridParallel
from models.distributed.placement import Placement
from models.model_types import build_model as build_ranking_model
from models.ranking import RankingModel
from models.run.checkpoint_model import model_record
from models.run.data import DatasetShape, RunData
from models.training import checkpoint as ckpt
from models.training.results_log import ResultsLogger


def build_model(
    config: Config,
    data: RunData | DatasetShape,
    comm: Communicator,
    placement: Placement,
) -> tuple[RankingModel, HybridParallel]:
    """This rank's model (DLRM or DCNv2, only the tables it owns) and its hybrid-parallel
    wrapper.

    The data give the dataset's shape: tables (cardinalities, hotness,
    combiners) and the number of numerical features.
    """
    # Same seed on every rank: identical dense initial weights (also broadcast later).
    keras.utils.set_random_seed(config.run.seed)
    # Each rank allocates only the tables it owns; per-table seeds give every table
    # the same initial rows whatever the world size.
    model = build_ranking_model(
        config.model,
        data.cardinalities,
        num_numerical_features=data.num_numerical,
        table_ids=placement.tables_per_rank[comm.rank],
        # Of a table split by rows, only this rank's rows (initialised as in the whole table).
        row_ranges=placement.row_ranges(comm.rank),
        seed=config.run.seed,
        hotness=data.hotness,
        combiners=data.combiners,
    )
    return model, HybridParallel(model, comm, placement, config.data.batch_size)


def restore_or_sync(
    config: Config,
    model: RankingModel,
    parallel: HybridParallel,
    optimizers: tuple,
    comm: Communicator,
    logger: ResultsLogger,
) -> ckpt.TrainingState:
    """The checkpointed state; restored, or dense weights broadcast.

    Args:
        optimizers: ``(dense_optimizer, embedding_optimizer)``.
    """
    dense_optimizer, embedding_optimizer = optimizers
    training = config.run.mode == "train"
    # Eval and inference restore weights only (no optimizer state needed).
    state = ckpt.TrainingState(
        model,
        parallel.owned_tables,
        embedding_optimizer if training else None,
        dense_optimizer if training else None,
        global_batch_size=config.data.batch_size if training else None,
        # What eval, inference and export need to rebuild the model from the checkpoint.
        model_config=model_record(
            config.model,
            model.cardinalities,
            keras.mixed_precision.global_policy().name,
            model.hotness,
            model.combiners,
        ),
        row_ranges=parallel.row_ranges,
    )
    if config.output.restore_checkpoint_path:
        info = ckpt.restore_checkpoint(config.output.restore_checkpoint_path, state, comm)
        logger.log(state.step, {"restored_checkpoint": str(info.path)})
    else:
        parallel.broadcast_dense_variables()
    return state
