"""Checks of the launch that only the running processes can make."""

from __future__ import annotations

from collections.abc import Mapping

from models.config import Config, ConfigError


def check_launcher(use_horovod: bool, environ: Mapping[str, str]) -> None:
    """Refuses N independent single-process runs started by horovodrun/mpirun.

    Without --use_horovod every process would train alone on the whole data
    and write the same log and checkpoint files.
    """
    for variable in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE"):
        size = environ.get(variable, "1")
        if not use_horovod and size.isdigit() and int(size) > 1:
            raise ConfigError(
                f"launched as {size} processes ({variable}={size}) but --use_horovod is not "
                "set; add --use_horovod (or start one process)"
            )


def check_world(config: Config, world: int) -> None:
    """Cross-checks the flags that only the launched world size can validate."""
    profiler = config.profiler
    if profiler.enabled and not 0 <= profiler.rank < world:
        raise ConfigError(
            f"--profiled_rank={profiler.rank} does not exist in a job of {world} rank(s); "
            f"use 0..{world - 1}"
        )
