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
    """Merges the table's counts into its vocabulary and saves it (``save_table``)."""
    workdir = WorkDir(task.output_dir)
    values, counts = merge_counts(
        load_unit_counts(workdir, u, task.table) for u in range(task.num_units)
    )
    vocab, sorted_values, sorted_ids = build_vocab(values, counts, task.threshold)
    stats = column_stats(values, counts, vocab, task.threshold)
    save_table(workdir, task.table, vocab, sorted_values, sorted_ids, stats)
    return task.table


def save_table(
    workdir: WorkDir,
    table: int,
    vocab: np.ndarray,
    sorted_values: np.ndarray,
    sorted_ids: np.ndarray,
    stats: dict,
) -> None:
    """Both engines: the lookup arrays, the column statistics and, last, the vocabulary,
    whose presence marks the table done (so a rerun with either engine can use it)."""
    save_npy(workdir.lookup(table, "values"), sorted_values)
    save_npy(workdir.lookup(table, "ids"), sorted_ids)
    save_json(workdir.column_stats(table), stats)
    save_npy(workdir.vocab(table), vocab)


def load_lookup(workdir: WorkDir, table: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped, so that workers share the pages of large tables."""
    return (
        np.load(workdir.lookup(table, "values"), mmap_mode="r"),
        np.load(workdir.lookup(table, "ids"), mmap_mode="r"),
    )


def load_column_stats(workdir: WorkDir, table: int) -> dict:
    return load_json(workdir.column_stats(table))
