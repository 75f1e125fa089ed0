"""Checkpoints that do not depend on the world size.

Layout of one checkpoint (``<root>/ckpt-<step, 9 digits>/``)::

    checkpoint.json                  format version, step, data position, model
                                     dims, cardinalities, optimizer names, world
                                     size at save, name/shape/dtype of every array
    tables/table_{i}.npy             table i, written by the rank that owns it
    tables/table_{i}.{slot}.npy      its embedding-optimizer slots
    dense/variable_{k:03d}.npy       dense (MLP) variables, written by rank 0
    dense_optimizer/variable_{k:03d}.npy   dense optimizer variables, rank 0

Every table is a file of its own, so a checkpoint written by 8 ranks is restored
on 1, 2 or 4: each rank reads the tables it owns now.

Saving is atomic: all ranks write into ``ckpt-<step>.tmp/``; after a barrier
rank 0 merges the per-rank manifests into ``checkpoint.json`` and renames the
directory. The rename is the commit point: a crash before it leaves the
previous checkpoints untouched, and "latest" resolution only considers
renamed directories holding a ``checkpoint.json``. All ranks must see the same
file system (a shared one across nodes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

FORMAT_VERSION = 1
METADATA_FILE = "checkpoint.json"
_NAME_RE = re.compile(r"^ckpt-(\d+)$")
_SLOT_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_MODEL_DIM_KEYS = (
    "embedding_dim",
    "bottom_mlp_dims",
    "top_mlp_dims",
    "num_numerical_features",
    "cardinalities",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model being restored."""


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
        model: a ``DLRM`` (``get_config``, ``embedding_variables``,
            ``dense_variables``).
        owned_tables: the table ids this rank owns (all tables on one rank).
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
    """

    model: Any
    owned_tables: Sequence[int]
    embedding_optimizer: EmbeddingOptimizer | None = None
    dense_optimizer: Any = None
    step: int = 0
    epoch: int = 0
    batch: int = 0
    global_batch_size: int | None = None


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`restore_checkpoint` found."""

    path: Path
    step: int
    epoch: int
    batch: int
    world_size: int
    format_version: int


# ---------------------------------------------------------------- discovery


def checkpoint_dir(root: str | os.PathLike, step: int) -> Path:
    """The directory a checkpoint of ``step`` is renamed to."""
    return Path(root) / f"ckpt-{step:09d}"


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _NAME_RE.match(entry.name)
        if match and (entry / METADATA_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory itself, or the latest complete one under a root.

    Raises:
        CheckpointError: nothing restorable at ``path``.
    """
    path = Path(path)
    if (path / METADATA_FILE).is_file():
        return path
    if path.name == "latest":
        path = path.parent
    found = list_checkpoints(path)
    if not found:
        what = "does not exist" if not path.exists() else "holds no complete checkpoint"
        raise CheckpointError(
            f"{path} {what} (expected {METADATA_FILE} there or ckpt-<step>/{METADATA_FILE} "
            "directories under it)"
        )
    return found[-1][1]


# ---------------------------------------------------------------- helpers


def _rank_and_size(comm: Communicator) -> tuple[int, int]:
    rank, size = int(comm.rank), int(comm.size)
    if not 0 <= rank < size:
        raise ValueError(f"communicator rank {rank} outside world size {size}")
    return rank, size


def _optimizer_name(optimizer: Any) -> str | None:
    if optimizer is None:
        return None
    inner = getattr(optimizer, "inner_optimizer", None)
    name = type(optimizer).__name__
    return f"{name}({type(inner).__name__})" if inner is not None else name


def _model_dims(model: Any) -> dict[str, Any]:
    config = model.get_config()
    missing = [k for k in _MODEL_DIM_KEYS if k not in config]
    if missing:
        raise ValueError(f"model config lacks {missing}; got keys {sorted(config)}")
    dims = {k: config[k] for k in _MODEL_DIM_KEYS}
    for key in ("bottom_mlp_dims", "top_mlp_dims", "cardinalities"):
        dims[key] = [int(v) for v in dims[key]]
    return dims


def _table_files(table: int, slots: Sequence[str]) -> dict[str, str]:
    files = {"weights": f"tables/table_{table}.npy"}
    for slot in slots:
        if not _SLOT_NAME_RE.match(slot):
            raise ValueError(f"slot name {slot!r} of table {table} is not usable in a file name")
        files[slot] = f"tables/table_{table}.{slot}.npy"
    return files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_array(directory: Path, relative: str, value: Any) -> dict[str, Any]:
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    with open(directory / relative, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return {"shape": list(array.shape), "dtype": array.dtype.str}


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as f:
        json.dump(content, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _sorted_tables(owned: Sequence[int], num_tables: int) -> list[int]:
    tables = sorted(int(t) for t in owned)
    bad = [t for t in tables if not 0 <= t < num_tables]
    if bad or len(set(tables)) != len(tables):
        raise ValueError(f"owned_tables {list(owned)} must be distinct ids in [0, {num_tables})")
    return tables


# ---------------------------------------------------------------- save


def save_checkpoint(
    root: str | os.PathLike, state: TrainingState, comm: Communicator, keep: int = 3
) -> Path:
    """Writes a checkpoint of ``state`` under ``root``; every rank calls it.

    Args:
        root: directory holding the ``ckpt-<step>`` directories.
        state: this rank's state; ``owned_tables`` of all ranks must cover
            every table exactly once.
        comm: communicator (rank, size, barrier).
        keep: complete checkpoints kept, the new one included; older ones are
            deleted by rank 0 after the new one is complete. 0 keeps all.

    Returns:
        The directory of the new checkpoint.
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    rank, size = _rank_and_size(comm)
    root = Path(root)
    final = checkpoint_dir(root, state.step)
    tmp = final.with_name(final.name + ".tmp")
    dims = _model_dims(state.model)
    tables = _sorted_tables(state.owned_tables, len(dims["cardinalities"]))

    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        # Left by a crashed save; never a complete checkpoint.
        for stale in [*root.glob("ckpt-*.tmp"), *root.glob("ckpt-*.replaced")]:
            shutil.rmtree(stale)
        for sub in ("tables", "dense", "dense_optimizer"):
            (tmp / sub).mkdir(parents=True)
    comm.barrier()

    manifest: dict[str, Any] = {"rank": rank, "tables": {}, "arrays": {}}
    table_vars = state.model.embedding_variables
    for table in tables:
        variable = table_vars[table]
        slots = _embedding_slots(state.embedding_optimizer, variable)
        files = _table_files(table, sorted(slots))
        manifest["tables"][str(table)] = files
        manifest["arrays"][files["weights"]] = _write_array(tmp, files["weights"], variable)
        for slot, value in slots.items():
            manifest["arrays"][files[slot]] = _write_array(tmp, files[slot], value)
    if rank == 0:
        for group, variables in _dense_groups(state, build=True).items():
            names = []
            for k, variable in enumerate(variables):
                relative = f"{group}/variable_{k:03d}.npy"
                manifest["arrays"][relative] = _write_array(tmp, relative, variable)
                manifest["arrays"][relative]["variable"] = str(getattr(variable, "path", ""))
                names.append(relative)
            manifest[group] = names
    _write_json(tmp / f"manifest.rank{rank}.json", manifest)
    comm.barrier()

    if rank == 0:
        metadata = _merge_manifests(tmp, size, dims)
        metadata.update(
            format_version=FORMAT_VERSION,
            step=int(state.step),
            data_position=_data_position(state),
            model=dims,
            optimizers={
                "embedding": _optimizer_name(state.embedding_optimizer),
                "embedding_iterations": (
                    int(state.embedding_optimizer.iterations.numpy())
                    if state.embedding_optimizer is not None
                    else None
                ),
                "dense": _optimizer_name(state.dense_optimizer),
            },
            world_size=size,
            saved_at=time.time(),
        )
        _write_json(tmp / METADATA_FILE, dict(sorted(metadata.items())))
        _fsync_dir(tmp)
        _commit(tmp, final)
        if keep:
            for _, old in list_checkpoints(root)[:-keep]:
                shutil.rmtree(old)
    comm.barrier()
    return final


def _data_position(state: TrainingState) -> dict[str, int]:
    position = {"epoch": int(state.epoch), "batch": int(state.batch)}
    if state.global_batch_size is not None:
        position["global_batch_size"] = int(state.global_batch_size)
    return position


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


def _embedding_slots(optimizer: EmbeddingOptimizer | None, variable: Any) -> dict[str, Any]:
    if optimizer is None:
        return {}
    if hasattr(optimizer, "build"):
        # Slots are created on first use; a fresh run restoring them has none yet.
        optimizer.build([variable])
    return dict(optimizer.slots_for(variable))


def _dense_groups(state: TrainingState, build: bool) -> dict[str, list]:
    groups = {"dense": list(state.model.dense_variables)}
    optimizer = state.dense_optimizer
    if optimizer is not None:
        if build and not optimizer.built:
            # A fresh optimizer has only its iteration counter until built.
            optimizer.build(groups["dense"])
        groups["dense_optimizer"] = list(optimizer.variables)
    return groups


def _merge_manifests(tmp: Path, size: int, dims: Mapping[str, Any]) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    owners: dict[str, int] = {}
    arrays: dict[str, Any] = {}
    merged: dict[str, Any] = {}
    for rank in range(size):
        path = tmp / f"manifest.rank{rank}.json"
        manifest = json.loads(path.read_text())
        for table, files in manifest["tables"].items():
            if table in owners:
                raise CheckpointError(
                    f"table {table} was written by ranks {owners[table]} and {rank}: "
                    "owned_tables must not overlap"
                )
            owners[table] = rank
            tables[table] = files
        arrays.update(manifest["arrays"])
        for group in ("dense", "dense_optimizer"):
            if group in manifest:
                merged[group] = manifest[group]
        path.unlink()
    missing = [t for t in range(len(dims["cardinalities"])) if str(t) not in owners]
    if missing:
        raise CheckpointError(f"tables {missing} are owned by no rank; checkpoint not written")
    order = sorted(tables, key=int)
    merged.update(
        tables={t: tables[t] for t in order},
        table_owners={t: owners[t] for t in order},
        arrays=dict(sorted(arrays.items())),
    )
    return merged


def _commit(tmp: Path, final: Path) -> None:
    """Renames ``tmp`` to ``final``, replacing an earlier save of the same step."""
    if final.exists():
        replaced = final.with_name(final.name + ".replaced")
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
        os.replace(tmp, final)
        shutil.rmtree(replaced)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


# ---------------------------------------------------------------- restore


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """``checkpoint.json`` of the checkpoint at ``path`` (resolved as latest)."""
    file = resolve_checkpoint(path) / METADATA_FILE
    try:
        metadata = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{file}: unreadable checkpoint metadata ({err})") from err
    required = (
        "format_version",
        "step",
        "data_position",
        "model",
        "optimizers",
        "world_size",
        "tables",
        "arrays",
        "dense",
    )
    missing = [k for k in required if k not in metadata]
    if missing:
        raise CheckpointError(f"{file}: missing keys {missing}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: format_version {metadata['format_version']}, this code reads {FORMAT_VERSION}"
        )
    return metadata


def _dim_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in _MODEL_DIM_KEYS[:-1]:
        if saved[key] != current[key]:
            problems.append(f"{key}: checkpoint {saved[key]}, model {current[key]}")
    saved_rows, rows = saved["cardinalities"], current["cardinalities"]
    if len(saved_rows) != len(rows):
        problems.append(f"number of tables: checkpoint {len(saved_rows)}, model {len(rows)}")
    for table, (a, b) in enumerate(zip(saved_rows, rows, strict=False)):
        if a != b:
            problems.append(f"table {table}: checkpoint has {a} rows, model has {b}")
    return problems


def _open_array(directory: Path, relative: str, arrays: Mapping[str, Any], target: Any, what: str):
    """Memory-maps one saved array and checks it against ``target`` (a variable)."""
    file = directory / relative
    if relative not in arrays:
        raise CheckpointError(f"{directory / METADATA_FILE}: no entry for {relative} ({what})")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as err:
        raise CheckpointError(f"{file}: missing ({what})") from err
    except (OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{file}: corrupt array file ({what}): {err}") from err
    expected = arrays[relative]
    if list(array.shape) != expected["shape"] or array.dtype.str != expected["dtype"]:
        raise CheckpointError(
            f"{file}: holds {array.dtype.str}{list(array.shape)} but {METADATA_FILE} "
            f"says {expected['dtype']}{expected['shape']} ({what})"
        )
    shape = [int(d) for d in target.shape]
    if list(array.shape) != shape:
        raise CheckpointError(f"{what}: checkpoint shape {list(array.shape)}, model {shape}")
    dtype = np.dtype(getattr(target.dtype, "as_numpy_dtype", target.dtype))
    if array.dtype != dtype:
        raise CheckpointError(f"{what}: checkpoint dtype {array.dtype}, model {dtype}")
    return array


def restore_checkpoint(
    path: str | os.PathLike, state: TrainingState, comm: Communicator
) -> CheckpointInfo:
    """Restores ``state`` from a checkpoint written by any world size.

    Each rank reads the tables in ``state.owned_tables`` (and their slots when
    ``state.embedding_optimizer`` is set) and the dense variables (and dense
    optimizer state when ``state.dense_optimizer`` is set). Everything is
    validated before any variable is assigned, so a failed restore leaves the
    model as it was. ``state.step``, ``epoch`` and ``batch`` are set.

    Args:
        path: a checkpoint directory or a root (its latest checkpoint is used).
        state: this rank's state.
        comm: communicator; only its rank is used (no collective).

    Raises:
        CheckpointError: files missing or corrupt (naming the file), or the
            checkpoint does not fit the model (naming every difference).
    """
    _rank_and_size(comm)
    directory = resolve_checkpoint(path)
    metadata = read_metadata(directory)
    dims = _model_dims(state.model)
    problems = _dim_differences(metadata["model"], dims)
    saved_opt = metadata["optimizers"]
    for key, optimizer in (
        ("embedding", state.embedding_optimizer),
        ("dense", state.dense_optimizer),
    ):
        name = _optimizer_name(optimizer)
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
    for table in _sorted_tables(state.owned_tables, len(dims["cardinalities"])):
        files = metadata["tables"].get(str(table))
        if files is None:
            raise CheckpointError(f"{directory / METADATA_FILE}: no entry for table {table}")
        variable = table_vars[table]
        targets = {"weights": variable}
        if state.embedding_optimizer is not None:
            slots = _embedding_slots(state.embedding_optimizer, variable)
            saved_slots = sorted(set(files) - {"weights"})
            if sorted(slots) != saved_slots:
                raise CheckpointError(
                    f"table {table}: checkpoint slots {saved_slots}, "
                    f"optimizer slots {sorted(slots)}"
                )
            targets.update(slots)
        for name, target in targets.items():
            what = f"table {table}" + ("" if name == "weights" else f" slot {name}")
            assignments.append((target, _open_array(directory, files[name], arrays, target, what)))
    for group, variables in _dense_groups(state, build=True).items():
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
