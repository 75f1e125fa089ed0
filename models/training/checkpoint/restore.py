"""Restoring a checkpoint of any world size, validated before anything is assigned."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.training.checkpoint.layout import (
    ABSENT_DIMS,
    LEGACY_MODEL_TYPE,
    METADATA_FILE,
    MODEL_DIM_KEYS,
    OPTIONAL_DIM_KEYS,
    CheckpointError,
    open_saved_array,
    read_metadata,
    resolve_checkpoint,
)
from models.training.checkpoint.row_shards import read_rows, saved_pieces
from models.training.checkpoint.state import (
    CheckpointInfo,
    Communicator,
    TrainingState,
    dense_groups,
    embedding_slots,
    model_dims,
    optimizer_name,
    rank_and_size,
    sorted_tables,
)


def restore_checkpoint(
    path: str | os.PathLike, state: TrainingState, comm: Communicator
) -> CheckpointInfo:
    """Restores ``state`` from a checkpoint written by any world size.

    Each rank reads the tables in ``state.owned_tables`` (and their slots when
    ``state.embedding_optimizer`` is set), only the rows it holds of a table
    split by rows now or at save (``row_shards``), and the dense variables (and dense
    optimizer state when ``state.dense_optimizer`` is set). Everything is
    validated before any variable is assigned, so a failed restore leaves the
    model as it was. ``state.step``, ``epoch``, ``batch``, ``loss_scale`` and
    ``best`` are set.

    Args:
        path: a checkpoint directory or a root (its latest checkpoint is used).
        state: this rank's state.
        comm: communicator; only its rank is used (no collective).

    Raises:
        CheckpointError: files missing or corrupt (naming the file), or the
            checkpoint does not fit the model (naming every difference).
    """
    rank_and_size(comm)
    directory = resolve_checkpoint(path)
    metadata = read_metadata(directory)
    dims = model_dims(state.model)
    problems = _dim_differences(metadata["model"], dims)
    saved_opt = metadata["optimizers"]
    for key, optimizer in (
        ("embedding", state.embedding_optimizer),
        ("dense", state.dense_optimizer),
    ):
        name = optimizer_name(optimizer)
        if name is not None and saved_opt.get(key) != name:
            problems.append(f"{key} optimizer: checkpoint {saved_opt.get(key)}, run {name}")
    if problems:
        raise CheckpointError(
            f"checkpoint {directory} does not match the model:\n  " + "\n  ".join(problems)
        )
    _check_batch_size(directory, metadata["data_position"], state.global_batch_size)

    arrays = metadata["arrays"]
    assignments = []  # (variable, memory-mapped array), validated before any assign
    table_vars = state.model.embedding_variables
    for table in sorted_tables(state.owned_tables, len(dims["cardinalities"])):
        rows = dims["cardinalities"][table]
        pieces = saved_pieces(directory, metadata, table, rows)
        variable = table_vars[table]
        targets = {"weights": variable}
        if state.embedding_optimizer is not None:
            slots = embedding_slots(state.embedding_optimizer, variable)
            for first, last, files in pieces:
                saved_slots = sorted(set(files) - {"weights"})
                if sorted(slots) != saved_slots:
                    raise CheckpointError(
                        f"table {table} rows [{first}, {last}): checkpoint slots "
                        f"{saved_slots}, optimizer slots {sorted(slots)}"
                    )
            targets.update(slots)
        held = state.row_ranges.get(table, (0, rows))
        for name, target in targets.items():
            what = f"table {table}" + ("" if name == "weights" else f" slot {name}")
            if len(pieces) == 1 and held == (0, rows):
                array = _open_array(directory, pieces[0][2][name], arrays, target, what)
            else:  # rows of a split table, or a whole table saved by row ranges
                array = read_rows(directory, pieces, name, arrays, held, target, what)
            assignments.append((target, array))
    for group, variables in dense_groups(state, build=True).items():
        saved = metadata.get(group)
        if saved is None:
            raise CheckpointError(f"{directory / METADATA_FILE}: no {group} state saved")
        if len(saved) != len(variables):
            raise CheckpointError(
                f"{group}: checkpoint has {len(saved)} variables, run has {len(variables)}"
            )
        for k, (relative, variable) in enumerate(zip(saved, variables, strict=True)):
            what = f"{group} variable {k} ({getattr(variable, 'path', '')})"
            assignments.append((variable, _open_array(directory, relative, arrays, variable, what)))

    for variable, array in assignments:
        variable.assign(np.asarray(array))
    iterations = saved_opt.get("embedding_iterations")
    if state.embedding_optimizer is not None and iterations is not None:
        state.embedding_optimizer.iterations.assign(iterations)
    state.loss_scale = _loss_scale(directory, metadata.get("loss_scale"))
    state.best = metadata.get("best")
    position = metadata["data_position"]
    state.step, state.epoch, state.batch = (
        int(metadata["step"]),
        int(position["epoch"]),
        int(position["batch"]),
    )
    return CheckpointInfo(
        path=directory,
        step=state.step,
        epoch=state.epoch,
        batch=state.batch,
        world_size=int(metadata["world_size"]),
        format_version=int(metadata["format_version"]),
    )


def _loss_scale(directory: Path, saved: Any) -> dict[str, Any] | None:
    """The saved dynamic loss scale, checked: a finite scale > 0 and a count >= 0."""
    if saved is None:
        return None
    try:
        scale, good = float(saved["scale"]), int(saved["good_steps"])
        valid = scale > 0 and math.isfinite(scale) and good >= 0
    except (TypeError, KeyError, ValueError):
        valid = False
    if not valid:
        raise CheckpointError(
            f"{directory / METADATA_FILE}: loss_scale {saved!r} is not a finite positive "
            "scale with a count of good steps"
        )
    return {"scale": scale, "good_steps": good}


def _check_batch_size(directory: Path, position: Mapping[str, Any], batch_size: int | None):
    """Refuses to resume mid-epoch with another batch size (rows would be skipped or repeated)."""
    saved = position.get("global_batch_size")
    if batch_size is None or saved is None or saved == batch_size or position["batch"] == 0:
        return
    raise CheckpointError(
        f"checkpoint {directory} stopped before batch {position['batch']} of epoch "
        f"{position['epoch']} with a global batch size of {saved}; resuming with {batch_size} "
        f"would skip or repeat rows of that epoch: resume with batch size {saved} (or from a "
        "checkpoint at an epoch boundary)"
    )


def _dim_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    saved_type = saved.get("model_type", LEGACY_MODEL_TYPE)
    if saved_type != current["model_type"]:
        # The dims of two different models are not worth comparing one by one.
        return [
            f"model type: the checkpoint holds a {saved_type} model, this run builds "
            f"{current['model_type']} (--model_type={saved_type} restores it)"
        ]
    problems = []
    for key in (*MODEL_DIM_KEYS[:-1], *OPTIONAL_DIM_KEYS):
        if key not in saved and key not in current:
            continue
        was, now = saved.get(key, ABSENT_DIMS.get(key)), current.get(key, ABSENT_DIMS.get(key))
        if was != now:
            problems.append(f"{key}: checkpoint {was}, model {now}")
    saved_rows, rows = saved["cardinalities"], current["cardinalities"]
    if len(saved_rows) != len(rows):
        problems.append(f"number of tables: checkpoint {len(saved_rows)}, model {len(rows)}")
    for table, (a, b) in enumerate(zip(saved_rows, rows, strict=False)):
        if a != b:
            problems.append(f"table {table}: checkpoint has {a} rows, model has {b}")
    return problems


def _open_array(directory: Path, relative: str, arrays: Mapping[str, Any], target: Any, what: str):
    """Memory-maps one saved array and checks it against ``target`` (a variable)."""
    array = open_saved_array(directory, relative, arrays, what)
    shape = [int(d) for d in target.shape]
    if list(array.shape) != shape:
        raise CheckpointError(f"{what}: checkpoint shape {list(array.shape)}, model {shape}")
    dtype = np.dtype(getattr(target.dtype, "as_numpy_dtype", target.dtype))
    if array.dtype != dtype:
        raise CheckpointError(f"{what}: checkpoint dtype {array.dtype}, model {dtype}")
    return array
