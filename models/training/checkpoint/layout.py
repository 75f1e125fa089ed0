"""Where a checkpoint's files are: names, discovery of complete checkpoints, metadata."""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
METADATA_FILE = "checkpoint.json"
# The directory under a checkpoint root that holds the best-AUC checkpoint
# (--keep_best_checkpoint): `<root>/best` is a complete checkpoint, so every
# reader of a checkpoint path takes it as is.
BEST_NAME = "best"
_NAME_RE = re.compile(r"^ckpt-(\d+)$")
_SLOT_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
MODEL_DIM_KEYS = (
    "embedding_dim",
    "bottom_mlp_dims",
    "top_mlp_dims",
    "num_numerical_features",
    "cardinalities",
)
# Recorded only for the models that have them (DCNv2's cross network, a linear part).
OPTIONAL_DIM_KEYS = ("num_cross_layers", "cross_layer_projection_dim", "linear")
# What an optional key that is not recorded means (None: the model has no such part).
ABSENT_DIMS = {"linear": False}
# What a checkpoint written before the model type was recorded holds.
LEGACY_MODEL_TYPE = "dlrm"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model being restored."""


def checkpoint_dir(root: str | os.PathLike, step: int) -> Path:
    """The directory a checkpoint of ``step`` is renamed to."""
    return Path(root) / f"ckpt-{step:09d}"


def best_checkpoint_dir(root: str | os.PathLike) -> Path:
    """The directory of the checkpoint with the best evaluation AUC under ``root``."""
    return Path(root) / BEST_NAME


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

    ``<root>/latest`` names the latest one; ``<root>/best`` is the kept best
    one (a checkpoint directory itself).

    Raises:
        CheckpointError: nothing restorable at ``path``.
    """
    path = Path(path)
    if (path / METADATA_FILE).is_file():
        return path
    if path.name == BEST_NAME and not path.exists():
        raise CheckpointError(
            f"{path} does not exist: no best checkpoint was kept under {path.parent} "
            "(training keeps one with --keep_best_checkpoint)"
        )
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


def table_files(table: int, slots: Sequence[str]) -> dict[str, str]:
    files = {"weights": f"tables/table_{table}.npy"}
    for slot in slots:
        if not _SLOT_NAME_RE.match(slot):
            raise ValueError(f"slot name {slot!r} of table {table} is not usable in a file name")
        files[slot] = f"tables/table_{table}.{slot}.npy"
    return files


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


def verify_checksum(file: Path, expected: int | None, what: str) -> None:
    """Compares the file's CRC-32 with the one saved (checkpoints without one are not checked)."""
    if expected is None:
        return
    crc = 0
    with open(file, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    if crc != expected:
        raise CheckpointError(
            f"{file}: checksum mismatch ({what}): CRC-32 {crc:08x}, {METADATA_FILE} recorded "
            f"{expected:08x}; the file changed after it was saved (damaged copy or storage)"
        )


def open_saved_array(
    directory: Path, relative: str, arrays: Mapping[str, Any], what: str
) -> np.ndarray:
    """Memory-maps one saved array after checking it against its metadata entry.

    The entry must exist, the file must load as the shape and dtype recorded, and
    its CRC-32 must match (streamed: the file is read, never held). Callers check
    the array against what the model needs.
    """
    file = directory / relative
    expected = arrays.get(relative)
    if expected is None:
        raise CheckpointError(f"{directory / METADATA_FILE}: no entry for {relative} ({what})")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as err:
        raise CheckpointError(f"{file}: missing ({what})") from err
    except (OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{file}: corrupt array file ({what}): {err}") from err
    if list(array.shape) != expected["shape"] or array.dtype.str != expected["dtype"]:
        raise CheckpointError(
            f"{file}: holds {array.dtype.str}{list(array.shape)} but {METADATA_FILE} "
            f"says {expected['dtype']}{expected['shape']} ({what})"
        )
    verify_checksum(file, expected.get("crc32"), what)
    return array
