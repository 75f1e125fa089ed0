"""The numerical transforms as TensorFlow ops give preproc's float16 values exactly."""

import numpy as np
import pytest
import tensorflow as tf

from models.serving import numerical as sn
from preproc.numerical import TRANSFORMS, transform

NAMES = sorted(TRANSFORMS)


def _served(names, x: np.ndarray, missing: np.ndarray, integer: bool) -> np.ndarray:
    transforms = sn.ColumnTransforms(names, integer)
    return transforms(tf.constant(x), tf.constant(missing)).numpy()


def _expected(names, x: np.ndarray, missing: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # 'none' overflows float16 above 65504, as preproc does
        columns = [transform(n, x[:, j], missing[:, j]) for j, n in enumerate(names)]
    return np.stack(columns, 1).astype(np.float32)


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    # Equal as numbers (infinities included); -0.0 == 0.0 (the module docstring).
    assert got.dtype == np.float32
    mismatch = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    assert not mismatch.any(), (np.argwhere(mismatch)[:5], got[mismatch][:5], want[mismatch][:5])


def _integers(rng: np.random.Generator) -> np.ndarray:
    small = np.arange(-1000, 200_000)
    magnitudes = 10 ** rng.uniform(0, 18, 200_000)
    large = np.clip(np.floor(magnitudes), 0, sn.INTEGER_MAX).astype(np.int64)
    large[::3] *= -1
    edges = [sn.INTEGER_MIN, sn.INTEGER_MIN + 1, sn.INTEGER_MAX, sn.INTEGER_MAX - 1, -3, -2]
    values = np.concatenate([small, np.clip(large, sn.INTEGER_MIN, None), edges])
    for name in ("log3", "log1p_clamp"):  # every step's first input and the one before it
        bounds = sn.integer_table(name).boundaries
        values = np.concatenate([values, bounds, np.maximum(bounds - 1, sn.INTEGER_MIN)])
    return values.astype(np.int64)


def _floats(rng: np.random.Generator) -> np.ndarray:
    magnitudes = 10 ** rng.uniform(-320, 308, 300_000)
    signs = np.where(rng.random(magnitudes.size) < 0.3, -1.0, 1.0)
    near_three = -3.0 + rng.uniform(-1e-6, 1e-6, 20_000)
    around = []
    for v in (-3.0, 0.0, 65504.0, 65520.0, -65520.0, 2.0**-24, 2.0**-25, 1.0):
        around += [np.nextafter(v, -np.inf), v, np.nextafter(v, np.inf)]
    values = [magnitudes * signs, near_three, np.array(around), rng.normal(0, 5, 100_000)]
    values.append(np.array([0.0, -0.0, 5e-324, -5e-324, np.finfo(np.float64).max, -1e308]))
    for name in ("log3", "log1p_clamp"):
        bounds = sn.float_table(name).boundaries[1:-1]
        values += [bounds, np.nextafter(bounds, -np.inf), np.nextafter(bounds, np.inf)]
    return np.concatenate(values)


def test_criteo_integers_every_transform():
    x = _integers(np.random.default_rng(1))
    grid = np.repeat(x[:, None], len(NAMES), axis=1)
    missing = np.zeros(grid.shape, bool)
    missing[::7, :] = True
    _assert_same(_served(NAMES, grid, missing, True), _expected(NAMES, grid, missing))


def test_schema_floats_every_transform():
    x = _floats(np.random.default_rng(2))
    grid = np.repeat(x[:, None], len(NAMES), axis=1)
    missing = np.zeros(grid.shape, bool)
    missing[::11, :] = True
    _assert_same(_served(NAMES, grid, missing, False), _expected(NAMES, grid, missing))


@pytest.mark.parametrize("integer", [True, False])
def test_columns_of_mixed_transforms_keep_their_order(integer):
    names = ["log1p_clamp", "none", "log3", "log3", "none"]
    rng = np.random.default_rng(5)
    x = rng.integers(-10, 10**6, (500, len(names)))
    x = x.astype(np.int64) if integer else x.astype(np.float64) * 0.37
    missing = rng.random(x.shape) < 0.2
    _assert_same(_served(names, x, missing, integer), _expected(names, x, missing))


def test_no_columns_and_unknown_names():
    x = np.zeros((3, 0), np.float64)
    assert _served([], x, np.zeros((3, 0), bool), False).shape == (3, 0)
    with pytest.raises(ValueError, match="unknown numerical transforms"):
        sn.ColumnTransforms(["log2"], integer=True)


def test_a_transform_that_steps_down_is_refused():
    def down(keys: np.ndarray) -> np.ndarray:
        return np.where(keys < 10, 1.0, 0.5)

    with pytest.raises(sn.TransformNotMonotoneError):
        sn._step_table(down, 0, 100)
