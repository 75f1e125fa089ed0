"""Checks of the launch that only the running processes can make."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

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


def check_outputs(config: Config) -> None:
    """Fails at start when an output of the run cannot be written, not after training.

    Checks that the checkpoint directory can be created and written (a file is
    created and removed there) and that the export path is not a file and lies
    in a writable directory.
    """
    out = config.output
    if out.save_checkpoint_path and config.run.mode == "train":
        _check_writable_dir(out.save_checkpoint_path, "--save_checkpoint_path")
    if out.export_saved_model_path:
        path = Path(out.export_saved_model_path)
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"--export_saved_model_path={path} is a file; the SavedModel is a directory "
                "(an existing one is replaced)"
            )
        parent = path.resolve().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"--export_saved_model_path={path}: cannot create it, {parent} is not a "
                "writable directory"
            )


def _check_writable_dir(directory: str, flag: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ConfigError(
            f"{flag}={directory}: cannot write there ({error.strerror or error}); "
            "nothing was trained"
        ) from error
