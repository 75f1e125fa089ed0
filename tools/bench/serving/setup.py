"""The benchmarked SavedModel and its requests: a reference-size DLRM with Criteo's raw input.

``export_reference_model`` builds the reference configuration (D = 128, MLPs
512-256-128 / 1024-1024-512-256-1, the 26 Criteo threshold-15 tables capped at
200,000 rows: ``BENCH_CARDINALITIES``) with its initial weights, and a
``RawInputSpec`` whose vocabularies are random distinct 32-bit values, one per
table row, then exports both signatures as ``dlrm_main.py`` does. The weights'
values do not change the time of a forward pass.

``raw_requests`` draws Criteo rows as strings: integers with log-normal
magnitudes (10% missing, a few negative), categorical values from the
vocabulary with frequent values first (power law), 5% values the vocabulary
never saw (id 0) and 5% missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.criteo import BENCH_CARDINALITIES
from preproc.schema import NUM_CATEGORICAL, NUM_NUMERICAL

REFERENCE = {
    "embedding_dim": 128,
    "bottom_mlp_dims": (512, 256, 128),
    "top_mlp_dims": (1024, 1024, 512, 256, 1),
}


def reference_spec(seed: int, cardinalities=BENCH_CARDINALITIES):
    """A Criteo ``RawInputSpec`` with random vocabularies of ``cardinality - 1`` values."""
    from models.serving.raw_input import RawColumn, RawInputSpec

    rng = np.random.default_rng(seed)
    vocabularies = []
    for rows in cardinalities:
        values = np.unique(rng.integers(0, 2**32, int(rows * 1.2) + 16, dtype=np.uint64))
        vocabularies.append(rng.permutation(values)[: rows - 1].astype(np.uint32))
    numerical = tuple(
        RawColumn(f"I{i + 1}", f"I{i + 1}", "numerical", transform="log3")
        for i in range(NUM_NUMERICAL)
    )
    tables = tuple(
        RawColumn(f"C{t + 1}", f"C{t + 1}", "categorical", table=t) for t in range(NUM_CATEGORICAL)
    )
    return RawInputSpec(
        root="(generated)",
        format="criteo",
        columns=numerical + tables,
        schema=None,
        labeled=True,
        vocabularies=tuple(vocabularies),
    )


def export_reference_model(path: Path, seed: int = 0, cardinalities=BENCH_CARDINALITIES):
    """Exports the reference DLRM with both signatures to ``path``; returns its spec."""
    import tensorflow as tf

    from models.dlrm import DLRM
    from models.export import export_saved_model

    spec = reference_spec(seed, cardinalities)
    model = DLRM(list(cardinalities), seed=seed, num_numerical_features=NUM_NUMERICAL, **REFERENCE)
    model(
        {
            "numerical": tf.zeros([1, NUM_NUMERICAL]),
            "categorical": tf.zeros([1, len(cardinalities)], tf.int32),
        }
    )
    export_saved_model(model, str(path), spec)
    return spec


def raw_requests(spec, rows: int, seed: int) -> np.ndarray:
    """``rows`` Criteo rows as an object array ``[rows, 39]`` of bytes (I1..I13, C1..C26)."""
    rng = np.random.default_rng(seed)
    out = np.empty((rows, NUM_NUMERICAL + NUM_CATEGORICAL), object)
    magnitude = np.floor(np.exp(rng.normal(2.0, 2.0, (rows, NUM_NUMERICAL)))).astype(np.int64)
    magnitude[rng.random(magnitude.shape) < 0.02] *= -1
    missing = rng.random(magnitude.shape) < 0.10
    for j in range(NUM_NUMERICAL):
        column = zip(magnitude[:, j].tolist(), missing[:, j].tolist(), strict=True)
        out[:, j] = [b"" if m else str(v).encode() for v, m in column]
    for t, vocab in enumerate(spec.vocabularies):
        # Frequent values first: index ~ log-uniform over the vocabulary.
        index = np.floor(np.exp(rng.uniform(0, np.log(vocab.size + 1), rows))).astype(np.int64) - 1
        values = vocab[np.clip(index, 0, vocab.size - 1)].astype(np.int64)
        draw = rng.random(rows)
        unseen = rng.integers(0, 2**32, rows)
        values = np.where(draw < 0.05, unseen, values)
        text = [f"{v:08x}".encode() for v in values]
        column = zip(draw.tolist(), text, strict=True)
        out[:, NUM_NUMERICAL + t] = [b"" if d > 0.95 else s for d, s in column]
    return out
