"""Between the passes: merge one table's per-unit counts into its vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preproc.count_pass import load_unit_counts
from preproc.vocab import build_vocab, merge_counts
from preproc.workdir import WorkDir, load_json, save_json, save_npy


@dataclass(frozen=True)
class VocabTask:
    table: int
    output_dir: str
    num_units: int
    threshold: int


def column_stats(values: np.ndarray, counts: np.ndarray, vocab: np.ndarray, threshold: int) -> dict:
    """Statistics of one table kept for the metadata (merged counts -> vocabulary)."""
    kept = counts >= max(threshold, 1)
    return {
        "distinct_values": int(values.size),
        "vocab_size": int(vocab.size),
        "occurrences": int(counts.sum()),
        "occurrences_in_vocab": int(counts[kept].sum()),
    }


def build_table(task: VocabTask) -> int:
    """Writes the lookup arrays, the column statistics and, last, ``vocab/cat_{i}.npy``."""
    workdir = WorkDir(task.output_dir)
    values, counts = merge_counts(
        load_unit_counts(workdir, u, task.table) for u in range(task.num_units)
    )
    vocab, sorted_values, sorted_ids = build_vocab(values, counts, task.threshold)
    save_npy(workdir.lookup(task.table, "values"), sorted_values)
    save_npy(workdir.lookup(task.table, "ids"), sorted_ids)
    save_json(workdir.column_stats(task.table), column_stats(values, counts, vocab, task.threshold))
    save_npy(workdir.vocab(task.table), vocab)
    return task.table


def load_lookup(workdir: WorkDir, table: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped, so that workers share the pages of large tables."""
    return (
        np.load(workdir.lookup(table, "values"), mmap_mode="r"),
        np.load(workdir.lookup(table, "ids"), mmap_mode="r"),
    )


def load_column_stats(workdir: WorkDir, table: int) -> dict:
    return load_json(workdir.column_stats(table))
