"""The synthetic label model: numpy reference against its TensorFlow port, bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from models.data.synthetic_labels import (
    id_effects,
    logit_weights,
    synthetic_logits,
    tf_id_effects,
    tf_synthetic_logits,
)

HOTNESS = (1, 3, 1, 100, 2)


def _features(rows, num_numerical, num_columns, seed=0):
    rng = np.random.default_rng(seed)
    numerical = rng.exponential(size=(rows, num_numerical)) * 8
    numerical = np.log1p(numerical).astype(np.float16).astype(np.float32)
    ids = rng.integers(0, 1 << 31, (rows, num_columns)).astype(np.int32)
    return numerical, ids


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_tf_id_effects_equal_numpy_including_wrapping(dtype):
    rng = np.random.default_rng(1)
    low, high = (-(1 << 31), 1 << 31) if dtype == np.int32 else (-(1 << 40), 1 << 40)
    ids = rng.integers(low, high, (20_000, 7), dtype=dtype)
    ids[0] = [0, 1, -1, np.iinfo(dtype).max, np.iinfo(dtype).min, (1 << 31) - 1, 12345]
    tables = [3, 0, 0, 6, 1, 2, 2]
    want = id_effects(ids, tables)
    np.testing.assert_array_equal(tf_id_effects(tf.constant(ids), tables).numpy(), want)
    # uint32 wrap-around: ids congruent modulo 2**32 share their effect.
    np.testing.assert_array_equal(id_effects(ids.astype(np.int64) + (1 << 32), tables), want)


@pytest.mark.parametrize(
    ("num_numerical", "hotness"), [(13, None), (0, HOTNESS), (4, HOTNESS), (3, ())]
)
def test_tf_logits_equal_numpy_eagerly_traced_and_in_tf_data(num_numerical, hotness):
    num_columns = 26 if hotness is None else sum(hotness)
    numerical, ids = _features(30_000, num_numerical, num_columns)
    want = synthetic_logits(numerical, ids, hotness)
    assert want.dtype == np.float32 and want.shape == (30_000,)

    def logits(n, i):
        return tf_synthetic_logits(n, i, hotness)

    inputs = (tf.constant(numerical), tf.constant(ids))
    np.testing.assert_array_equal(logits(*inputs).numpy(), want)
    np.testing.assert_array_equal(tf.function(logits)(*inputs).numpy(), want)
    dataset = tf.data.Dataset.from_tensors(inputs).map(logits)
    np.testing.assert_array_equal(next(iter(dataset)).numpy(), want)


def test_logits_are_the_documented_linear_model():
    numerical, ids = _features(1000, 4, sum(HOTNESS), seed=2)
    tables = np.repeat(np.arange(len(HOTNESS)), HOTNESS)
    effects = id_effects(ids, tables).astype(np.float64)
    # Each table's mean effect, weighted 2 / sqrt(F); numericals centred at 1.6.
    per_table = np.stack([effects[:, tables == t].mean(axis=1) for t in range(5)], axis=1)
    weights = np.linspace(-1, 1, 4) / 2.0
    want = -1.5 + 2.0 * per_table.sum(axis=1) / np.sqrt(5) + (numerical - 1.6) @ weights
    # Each of the 111 terms is rounded to a multiple of 2**-20 before the sum.
    np.testing.assert_allclose(
        synthetic_logits(numerical, ids, HOTNESS), want, rtol=0, atol=111 * 2**-21 + 1e-6
    )
    a, b, column_tables = logit_weights(4, HOTNESS)
    np.testing.assert_array_equal(column_tables, tables)
    assert a.dtype == b.dtype == np.float32 and len(a) == 107 and len(b) == 4


def test_single_valued_hotness_is_the_default():
    numerical, ids = _features(100, 2, 3, seed=3)
    np.testing.assert_array_equal(
        synthetic_logits(numerical, ids, (1, 1, 1)), synthetic_logits(numerical, ids)
    )
    with pytest.raises(ValueError, match=r"hotness \[1, 1\] sums to 2, not 3 ids"):
        synthetic_logits(numerical, ids, (1, 1))


def test_id_effects_are_fixed_balanced_and_table_specific():
    ids = np.arange(100_000, dtype=np.int32).reshape(-1, 2)
    effects = id_effects(ids)
    assert effects.min() >= -1 and effects.max() <= 1
    assert abs(effects.mean()) < 0.01
    np.testing.assert_array_equal(id_effects(ids[:10]), effects[:10])
    same_ids = np.stack([ids[:, 0], ids[:, 0]], axis=1)
    assert abs(np.corrcoef(id_effects(same_ids).T)[0, 1]) < 0.02
