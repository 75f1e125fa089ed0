"""Paths of a run's outputs and intermediate files, and atomic writes.

Every file is written under a temporary name and renamed when complete, so an
interrupted run leaves either a complete file or none (the preallocated split
files, written in place by many tasks, keep their ``.tmp`` name until the last
task is done).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from models.data.feature_spec import vocab_file


class WorkDir:
    """Layout of ``<output_dir>`` and ``<output_dir>/_work``."""

    def __init__(self, output_dir: str) -> None:
        self.root = output_dir
        self.work = os.path.join(output_dir, "_work")

    def make(self) -> None:
        for sub in ("pass1", "lookup", "pass2", "assemble"):
            os.makedirs(os.path.join(self.work, sub), exist_ok=True)
        os.makedirs(os.path.dirname(self.vocab(0)), exist_ok=True)

    def config(self) -> str:
        return os.path.join(self.work, "config.json")

    def pass1(self, unit: int) -> str:
        return os.path.join(self.work, "pass1", f"unit_{unit:06d}.npz")

    def parsed(self, unit: int) -> str:
        return os.path.join(self.work, "pass1", f"unit_{unit:06d}.parsed")

    def lookup(self, table: int, kind: str) -> str:
        return os.path.join(self.work, "lookup", f"cat_{table}_{kind}.npy")

    def column_stats(self, table: int) -> str:
        return os.path.join(self.work, "lookup", f"cat_{table}.json")

    def vocab(self, table: int) -> str:
        return os.path.join(self.root, vocab_file(table))

    def pass2(self, unit: int, name: str) -> str:
        return os.path.join(self.work, "pass2", f"unit_{unit:06d}.{name}")

    def assembled(self, split: str, task: int) -> str:
        return os.path.join(self.work, "assemble", f"{split}_{task:06d}.done")

    def split_file(self, split: str, name: str) -> str:
        return os.path.join(self.root, split, name)

    def output(self, name: str) -> str:
        return os.path.join(self.root, name)


@contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator:
    """Opens ``path + '.tmp'`` for writing and renames it to ``path`` on success."""
    tmp = path + ".tmp"
    with open(tmp, mode) as f:
        yield f
    # No fsync: the rename protects against a killed process (the page cache
    # survives it); surviving a power cut is not a goal and fsync costs a lot.
    os.replace(tmp, path)


def save_npy(path: str, array: np.ndarray) -> None:
    with atomic_open(path) as f:
        np.save(f, array)


def save_json(path: str, obj: object) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)
