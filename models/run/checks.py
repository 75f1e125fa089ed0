"""Checks of the launch that only the running processes can make."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from models.config import Config, ConfigError
from models.serving.raw_input import raw_input_missing


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


def raw_input_root(config: Config) -> str | None:
    """The dataset whose vocabularies give the export its ``serve_raw`` signature, or None.

    Checked at start, so that an explicit ``--export_raw_input`` with a dataset
    lacking ``metadata.json`` or ``vocab/`` fails before training; unset, such a
    dataset (or synthetic data) exports the id-input signature only, with a warning.
    """
    out, data = config.output, config.data
    if not out.export_saved_model_path or out.export_raw_input is False:
        return None
    if data.dataset_type != "raw" or not data.dataset_path:
        return None  # synthetic data has no raw rows; an explicit request failed validation
    reason = raw_input_missing(data.dataset_path)
    if reason is None:
        return data.dataset_path
    if out.export_raw_input:
        raise ConfigError(f"--export_raw_input: {reason}")
    logging.warning("the SavedModel will have the id-input signature only: %s", reason)
    return None
