"""The vocabulary of the dataset contract: channels, dtypes, ``Feature``, ``Chunk``.

The lowest layer of ``feature_spec`` (the contract, which re-exports every name
here: import them from there) and ``spec_checks`` (parsing and validation of a
spec, which takes these plain values and never the ``FeatureSpec`` itself).
File names stay in ``feature_spec`` alone (DEVELOPERS.md, "Binary dataset format").
"""

from __future__ import annotations

import dataclasses

import numpy as np

LABEL_CHANNEL, NUMERICAL_CHANNEL, CATEGORICAL_CHANNEL = "label", "numerical", "categorical"
CHANNELS = (LABEL_CHANNEL, NUMERICAL_CHANNEL, CATEGORICAL_CHANNEL)
SPLIT_BINARY = "split_binary"

LABEL_DTYPE = np.dtype(np.bool_)
NUMERICAL_DTYPE = np.dtype("<f2")
# Candidate categorical dtypes, smallest first (NVIDIA's rule, kept so both
# preprocessing pipelines agree on the bytes).
CATEGORICAL_DTYPES = (np.dtype("<i1"), np.dtype("<i2"), np.dtype("<i4"))
# How a multi-hot feature's vectors may be pooled (``combiner`` in the spec).
COMBINERS = ("sum", "mean")


class DatasetError(ValueError):
    """A dataset's spec, metadata or files are missing, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature: on-disk dtype, table rows (categorical) and ids per row."""

    name: str
    dtype: np.dtype
    cardinality: int | None = None
    hotness: int = 1
    combiner: str | None = None  # pooling of a multi-hot feature; None: the run's default


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Features stored together in one file of a split (``split_binary``)."""

    features: tuple[str, ...]
    file: str
