"""Writing a checkpoint: every rank its tables, rank 0 the dense state, then the commit."""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.training.checkpoint.layout import (
    BEST_NAME,
    FORMAT_VERSION,
    METADATA_FILE,
    CheckpointError,
    best_checkpoint_dir,
    checkpoint_dir,
    list_checkpoints,
    table_files,
)
from models.training.checkpoint.row_shards import merge_shards, shard_files
from models.training.checkpoint.state import (
    Communicator,
    TrainingState,
    dense_groups,
    embedding_slots,
    model_dims,
    optimizer_name,
    rank_and_size,
    sorted_tables,
)


def save_checkpoint(
    root: str | os.PathLike,
    state: TrainingState,
    comm: Communicator,
    keep: int = 3,
    best: bool = False,
) -> Path:
    """Writes a checkpoint of ``state`` under ``root``; every rank calls it.

    Args:
        root: directory holding the ``ckpt-<step>`` directories.
        state: this rank's state; ``owned_tables`` of all ranks must cover
            every table exactly once (a split table: its ``row_ranges`` must
            cover its rows exactly once, see ``row_shards``).
        comm: communicator (rank, size, barrier).
        keep: complete checkpoints kept, the new one included; older ones are
            deleted by rank 0 after the new one is complete. 0 keeps all.
        best: write the kept best checkpoint ``<root>/best`` instead of
            ``ckpt-<step>`` (replacing the previous best; nothing is pruned).

    Returns:
        The directory of the new checkpoint.
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    rank, size = rank_and_size(comm)
    root = Path(root)
    final = best_checkpoint_dir(root) if best else checkpoint_dir(root, state.step)
    tmp = final.with_name(final.name + ".tmp")
    dims = model_dims(state.model)
    tables = sorted_tables(state.owned_tables, len(dims["cardinalities"]))

    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        # Left by a crashed save; never a complete checkpoint.
        patterns = ("ckpt-*.tmp", "ckpt-*.replaced", f"{BEST_NAME}.tmp", f"{BEST_NAME}.replaced")
        for stale in [path for pattern in patterns for path in root.glob(pattern)]:
            shutil.rmtree(stale)
        for sub in ("tables", "dense", "dense_optimizer"):
            (tmp / sub).mkdir(parents=True)
    comm.barrier()

    manifest: dict[str, Any] = {"rank": rank, "tables": {}, "table_shards": {}, "arrays": {}}
    table_vars = state.model.embedding_variables
    for table in tables:
        variable = table_vars[table]
        slots = embedding_slots(state.embedding_optimizer, variable)
        if table in state.row_ranges:
            start, end = state.row_ranges[table]
            files = shard_files(table, start, end, sorted(slots))
            shard = {"rows": [start, end], "rank": rank, "files": files}
            manifest["table_shards"][str(table)] = shard
        else:
            files = table_files(table, sorted(slots))
            manifest["tables"][str(table)] = files
        manifest["arrays"][files["weights"]] = _write_array(tmp, files["weights"], variable)
        for slot, value in slots.items():
            manifest["arrays"][files[slot]] = _write_array(tmp, files[slot], value)
    if rank == 0:
        for group, variables in dense_groups(state, build=True).items():
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
            **({} if state.model_config is None else {"model_config": dict(state.model_config)}),
            **({} if state.loss_scale is None else {"loss_scale": dict(state.loss_scale)}),
            **({} if state.best is None else {"best": dict(state.best)}),
            optimizers={
                "embedding": optimizer_name(state.embedding_optimizer),
                "embedding_iterations": (
                    int(state.embedding_optimizer.iterations.numpy())
                    if state.embedding_optimizer is not None
                    else None
                ),
                "dense": optimizer_name(state.dense_optimizer),
            },
            world_size=size,
            saved_at=time.time(),
        )
        _write_json(tmp / METADATA_FILE, dict(sorted(metadata.items())))
        _fsync_dir(tmp)
        _commit(tmp, final)
        if keep and not best:
            for _, old in list_checkpoints(root)[:-keep]:
                shutil.rmtree(old)
    comm.barrier()
    return final


def _data_position(state: TrainingState) -> dict[str, int]:
    position = {"epoch": int(state.epoch), "batch": int(state.batch)}
    if state.global_batch_size is not None:
        position["global_batch_size"] = int(state.global_batch_size)
    return position


def _merge_manifests(tmp: Path, size: int, dims: Mapping[str, Any]) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    owners: dict[str, int] = {}
    shards: dict[str, list[dict[str, Any]]] = {}
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
        for table, shard in manifest.get("table_shards", {}).items():
            shards.setdefault(table, []).append(shard)
        arrays.update(manifest["arrays"])
        for group in ("dense", "dense_optimizer"):
            if group in manifest:
                merged[group] = manifest[group]
        path.unlink()
    shards = merge_shards(shards, tables, dims["cardinalities"])
    written = {*owners, *shards}
    missing = [t for t in range(len(dims["cardinalities"])) if str(t) not in written]
    if missing:
        raise CheckpointError(f"tables {missing} are owned by no rank; checkpoint not written")
    order = sorted(tables, key=int)
    merged.update(
        tables={t: tables[t] for t in order},
        table_owners={t: owners[t] for t in order},
        arrays=dict(sorted(arrays.items())),
    )
    if shards:  # absent when no table is split: such checkpoints are unchanged
        merged["table_shards"] = shards
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _ChecksummedFile:
    """A binary file that keeps the CRC-32 of everything written to it."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.crc32 = 0

    def write(self, data: Any) -> int:
        self.crc32 = zlib.crc32(data, self.crc32)
        return self._file.write(data)


def _write_array(directory: Path, relative: str, value: Any) -> dict[str, Any]:
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    with open(directory / relative, "wb") as f:
        # The CRC is taken of the bytes as written, so a restore can tell bit rot.
        checksummed = _ChecksummedFile(f)
        np.save(checksummed, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return {"shape": list(array.shape), "dtype": array.dtype.str, "crc32": checksummed.crc32}


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as f:
        json.dump(content, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
