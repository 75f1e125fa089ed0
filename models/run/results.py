"""The results log of a run: its config file, its parameters line."""

from __future__ import annotations

import logging
from typing import Any

from models.config import Config, config_path_for, write_config
from models.device import DeviceSetup
from models.distributed.hybrid import HybridParallel
from models.huge_pages import huge_pages_state
from models.run.data import RunData
from models.training.optimizers import SparseOptimizer
from models.training.results_log import ResultsLogger


def open_results_log(config: Config, rank: int) -> ResultsLogger:
    """The results log (rank 0 writes; it also writes the config next to it)."""
    out = config.output
    if rank == 0:
        write_config(config, config_path_for(out.log_path))
    return ResultsLogger(
        out.log_path,
        rank=rank,
        tensorboard_dir=out.tensorboard_log_dir,
        # A resumed training run continues its log.
        append=bool(out.restore_checkpoint_path) and config.run.mode == "train",
    )


def log_parameters(
    logger: ResultsLogger,
    config: Config,
    device: DeviceSetup,
    data: RunData,
    parallel: HybridParallel,
    embedding_optimizer: SparseOptimizer,
) -> None:
    """Logs the flags and what the run derived from them (device, placement, ...)."""
    placement = parallel.placement
    logger.parameters(
        {
            **_flat(config.to_dict()),
            "world_size": parallel.comm.size,
            "device_kind": device.kind,
            "precision_policy": device.policy_name,
            "loss_scale_applied": device.loss_scale,
            "embedding_update_xla": bool(getattr(embedding_optimizer, "jit_compile", False)),
            "huge_pages": huge_pages_state(),
            "cardinalities": list(data.cardinalities),
            "placement": placement.to_dict(),
            "alltoall_bytes_per_step": parallel.alltoall_bytes_per_step(),
            "split_alltoall_bytes_per_step_max": parallel.split_alltoall_bytes_per_step(),
        }
    )
    if parallel.comm.rank == 0:
        logging.info("placement:\n%s", parallel.describe())


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = list(value) if isinstance(value, tuple) else value
    return flat
