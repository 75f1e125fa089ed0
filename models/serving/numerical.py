"""``preproc``'s numerical transforms as TensorFlow ops, equal to ``preproc`` by construction.

``preproc.numerical.transform`` computes ``log(x + 3)`` (or ``log1p``) in
float64 with numpy, then rounds to float32 and float16. TensorFlow's ``log``
is another implementation (Eigen's), which may differ in the last bit of a
float64 and so, rarely, in the float16 that the model is trained on. Instead
of recomputing the logarithm, the export tabulates ``preproc``'s own function:
its float16 result is a non-decreasing step function of the input, so it is
given exactly by the inputs where it steps up (found by binary search over
every float16 value, a few thousand steps) and the value of each step. At
serving time one ``searchsorted`` per column finds the step.

- Criteo's integers (int64): ``log3`` and ``log1p_clamp`` are non-decreasing
  over every integer ``preproc.parse`` accepts (at most 18 characters).
- A schema's numbers (float64): ``log1p_clamp`` is non-decreasing; ``log3``
  is constant (``log 1 = 0``) up to -3 and increasing above, so the table
  covers (-3, max] and ``x <= -3`` takes the constant.
- ``none`` is a cast (float64 -> float32 -> float16, as numpy rounds), done
  with TensorFlow's casts and ``float16.round_to_float16``.

Values come out as float32 holding float16 values (what the binary dataset's
readers give the model); no float16 tensor is made (``models.data.float16``).
A table step's value is ``preproc``'s at its first input: for ``log1p_clamp``
of a float ``-0.0`` that is ``+0.0`` where numpy gives ``-0.0``, the only
difference, which no model output can see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from models.data.float16 import round_to_float16
from preproc.numerical import TRANSFORMS, transform
from preproc.parse import MAX_INTEGER_CHARS

# The integers preproc.parse accepts: '-' and 17 digits up to 18 digits.
INTEGER_MIN = -(10 ** (MAX_INTEGER_CHARS - 1) - 1)
INTEGER_MAX = 10**MAX_INTEGER_CHARS - 1
# Floats: inputs up to this value are the constant f(LOG3_FLOOR) under log3.
LOG3_FLOOR = -3.0
_FLOAT16_MAX = 65504.0
_SIGN = np.int64(-(2**63))


class TransformNotMonotoneError(ValueError):
    """A transform's float16 result steps down somewhere: no step table can represent it."""


@dataclass(frozen=True)
class StepTable:
    """``f(x) = values[k]`` for ``boundaries[k] <= x < boundaries[k + 1]``.

    Attributes:
        boundaries: ascending int64 or float64; ``boundaries[0]`` is the domain's minimum.
        values: float32 (float16 values), one per step, strictly increasing.
    """

    boundaries: np.ndarray
    values: np.ndarray


def _float_keys(x: np.ndarray) -> np.ndarray:
    """int64 keys ordered as the float64 values (-0.0 and 0.0 share key 0)."""
    bits = np.asarray(x, np.float64).view(np.int64)
    return np.where(bits < 0, -(bits & ~_SIGN), bits)


def _keys_to_floats(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys < 0, (-keys) | _SIGN, keys)
    return bits.astype(np.int64).view(np.float64)


def _float16_targets() -> np.ndarray:
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64)
    return np.unique(every[np.isfinite(every)])


def _midpoint(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """floor((lo + hi) / 2) without overflowing int64."""
    return lo // 2 + hi // 2 + ((lo & 1) + (hi & 1)) // 2


def _step_table(f: Callable[[np.ndarray], np.ndarray], lo: int, hi: int) -> tuple[np.ndarray, ...]:
    """Boundaries (as keys) and values of ``f`` (keys -> float64 of float16) over [lo, hi]."""
    lo_key, hi_key = np.int64(lo), np.int64(hi)
    first, last = f(np.array([lo_key]))[0], f(np.array([hi_key]))[0]
    targets = _float16_targets()
    targets = targets[(targets > first) & (targets <= last)]
    # For each target value, the smallest key whose f reaches it: f(below) < t <= f(above).
    below = np.full(targets.shape, lo_key)
    above = np.full(targets.shape, hi_key)
    while np.any(above > below + 1):
        middle = _midpoint(below, above)
        reached = f(middle) >= targets
        above = np.where(reached, middle, above)
        below = np.where(reached, below, middle)
    keys = np.unique(np.concatenate([[lo_key], above]))
    values = f(keys)
    # Checks at every step's edges (the tests compare with preproc everywhere else).
    ends = np.append(keys[1:] - 1, hi_key)
    if np.any(np.diff(values) <= 0) or np.any(f(ends) != values):
        raise TransformNotMonotoneError("the transform is not non-decreasing over its domain")
    return keys, values


def integer_table(name: str) -> StepTable:
    """The step table of transform ``name`` over Criteo's integers."""

    def f(keys: np.ndarray) -> np.ndarray:
        return transform(name, keys, np.zeros(keys.shape, bool)).astype(np.float64)

    keys, values = _step_table(f, INTEGER_MIN, INTEGER_MAX)
    return StepTable(keys, values.astype(np.float32))


def float_table(name: str) -> StepTable:
    """The step table of transform ``name`` over finite float64 inputs (log3: above -3)."""

    def f(keys: np.ndarray) -> np.ndarray:
        x = _keys_to_floats(keys)
        return transform(name, x, np.zeros(x.shape, bool)).astype(np.float64)

    largest = np.finfo(np.float64).max
    lo, hi = _float_keys(np.array([LOG3_FLOOR if name == "log3" else -largest, largest]))
    keys, values = _step_table(f, int(lo) + (name == "log3"), int(hi))
    return StepTable(_keys_to_floats(keys), values.astype(np.float32))


def _missing_value(name: str) -> np.float32:
    out = transform(name, np.zeros(1, np.float64), np.ones(1, bool))
    return np.float32(out[0])


def _cast_to_float16(x: tf.Tensor) -> tf.Tensor:
    """float64 -> float32 -> float16 as numpy rounds (overflow to +-inf), as float32."""
    rounded = round_to_float16(tf.cast(x, tf.float32))
    infinite = tf.where(rounded > 0, np.float32(np.inf), np.float32(-np.inf))
    return tf.where(tf.abs(rounded) > _FLOAT16_MAX, infinite, rounded)


def _transpose(x: tf.Tensor) -> tf.Tensor:
    """[B, T] -> [T, B]; int64 moves as float64 bits: TensorFlow's oneDNN build logs an
    error line ("supports DT_INT64 only on platforms with AVX-512") at an integer transpose
    on other CPUs. A transpose only moves the bytes, so every bit pattern comes back."""
    if x.dtype == tf.int64:
        return tf.bitcast(tf.transpose(tf.bitcast(x, tf.float64)), tf.int64)
    return tf.transpose(x)


class ColumnTransforms:
    """The transforms of ``N`` numerical columns, applied to a batch as TensorFlow ops.

    Args:
        names: each column's transform (``preproc.numerical.TRANSFORMS``).
        integer: inputs are int64 (Criteo's integers), else float64 (a schema's numbers).
    """

    def __init__(self, names: Sequence[str], integer: bool) -> None:
        unknown = sorted(set(names) - set(TRANSFORMS))
        if unknown:
            raise ValueError(f"unknown numerical transforms {unknown}; known: {sorted(TRANSFORMS)}")
        self.names = tuple(names)
        self.integer = integer
        self.tabled = [j for j, n in enumerate(self.names) if n != "none"]
        cache: dict[str, StepTable] = {}
        for name in {self.names[j] for j in self.tabled}:
            cache[name] = integer_table(name) if integer else float_table(name)
        tables = [cache[self.names[j]] for j in self.tabled]
        width = max((t.boundaries.size for t in tables), default=1)
        # Padding boundaries sort above every input, so no input reaches the padded steps.
        pad = np.iinfo(np.int64).max if integer else np.inf
        dtype = np.int64 if integer else np.float64
        self.boundaries = np.full((len(tables), width), pad, dtype)
        self.values = np.zeros((len(tables), width), np.float32)
        for row, table in enumerate(tables):
            self.boundaries[row, : table.boundaries.size] = table.boundaries
            self.values[row, : table.values.size] = table.values
        self.missing = np.array([_missing_value(n) for n in self.names], np.float32)
        self.floor = np.array(
            [_missing_value("log3") if n == "log3" and not integer else np.nan for n in self.names],
            np.float32,
        )

    def __call__(self, x: tf.Tensor, missing: tf.Tensor) -> tf.Tensor:
        """float32 [B, N] (float16 values) of ``x`` ([B, N] int64 or float64; any value
        where ``missing`` is True)."""
        out: dict[int, tf.Tensor] = {}
        if self.tabled:
            tabled = _transpose(tf.gather(x, self.tabled, axis=1))  # [T, B]
            step = tf.searchsorted(tf.constant(self.boundaries), tabled, side="right") - 1
            # Below the domain (log3 floats up to -3, replaced below): any step will do.
            step = tf.maximum(step, 0)
            looked_up = tf.gather(tf.constant(self.values), step, batch_dims=1)
            for row, j in enumerate(self.tabled):
                out[j] = looked_up[row]
        for j, name in enumerate(self.names):
            if name == "none":
                out[j] = _cast_to_float16(x[:, j])
            elif not self.integer and name == "log3":
                out[j] = tf.where(x[:, j] <= LOG3_FLOOR, self.floor[j], out[j])
        columns = [out[j] for j in range(len(self.names))]
        values = tf.stack(columns, axis=1) if columns else tf.zeros([tf.shape(x)[0], 0])
        return tf.where(missing, tf.constant(self.missing), values)
