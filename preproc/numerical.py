"""Transforms of numerical features (Criteo's 13 integers, a schema's numbers) into float16."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def log3(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The reference (NVIDIA/Cambricon Spark) transform: log(x + 3); missing and x <= -3 -> 0."""
    valid = ~missing & (values > -3)
    shifted = np.where(valid, values + 3, 1).astype(np.float64)
    return np.log(shifted)


def log1p_clamp(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """MLPerf/TorchRec: missing and negatives -> 0, then log(x + 1)."""
    clamped = np.where(missing, 0, np.maximum(values, 0)).astype(np.float64)
    return np.log1p(clamped)


def none(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The value as is (float16 holds up to 65504); missing -> 0."""
    return np.where(missing, 0, values).astype(np.float64)


TRANSFORMS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "log3": log3,
    "log1p_clamp": log1p_clamp,
    "none": none,
}


def transform(name: str, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """float16 features. Goes through float32 as NVIDIA's pipeline does (Spark double ->
    float32 binary -> float16), so both give the same bits."""
    return TRANSFORMS[name](values, missing).astype(np.float32).astype(np.float16)
