"""The label model of the synthetic data, in numpy (the reference) and in TensorFlow.

``label ~ Bernoulli(sigmoid(logit))`` with

    logit = BIAS + sum over id columns c of  a_c * effect(id_c, table_c)
                 + sum over numericals j of  b_j * (x_j - NUM_CENTER)

where ``effect`` is a fixed pseudo-random value in [-1, 1] per (id, table)
pair (``id_effects``), ``a_c = CAT_WEIGHT / (hotness_t * sqrt(F))`` (a
multi-hot table contributes the mean of its ids' effects) and ``b_j`` spans
``NUM_WEIGHT * [-1, 1] / sqrt(N)``. The constants give about a quarter of
positive labels (as Criteo) and an AUC of the logits themselves (the best any
model can reach) of about 0.78: learnable but not trivial.

The TensorFlow functions (``tf_id_effects``, ``tf_synthetic_logits``) compute
the same float32 values bit for bit: the hash is uint32 arithmetic (wrapping,
as numpy's), and the terms of a logit are rounded to multiples of 2**-20 and
summed as int64, exactly, so no library's order of summation enters the result
(a float32 sum depends on it: TensorFlow's AddN and reductions associate
differently from numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

CAT_WEIGHT = 2.0
NUM_WEIGHT = 1.0
BIAS = -1.5
NUM_CENTER = 1.6

# Knuth's multiplicative hash of the id, salted per table, then one
# xor-shift-multiply round to mix the high bits into the 24 kept ones.
_ID_MULTIPLIER = 0x9E3779B1
_SALT_MULTIPLIER = 0x85EBCA6B
_MIX_SHIFT = 15
_MIX_MULTIPLIER = 0x2C1B3C6D
_KEPT_SHIFT = 8  # 32 - 8 = 24 bits, exact in float32
_EFFECT_SCALE = np.float32(2.0 / (1 << 24))
# Logit terms are summed in fixed point with this many fractional bits: far
# finer than any effect on a label. The int64 sum is exact; its conversion to
# float32 too while it is below 16 in magnitude (rounded to nearest even by
# both libraries above that).
_FIXED_POINT_BITS = 20
_TO_FIXED = np.float32(1 << _FIXED_POINT_BITS)
_FROM_FIXED = np.float32(1.0 / (1 << _FIXED_POINT_BITS))


def _column_tables(num_columns: int, tables: Sequence[int] | np.ndarray | None) -> np.ndarray:
    return np.arange(num_columns) if tables is None else np.asarray(tables)


def _salts(tables: np.ndarray) -> np.ndarray:
    """uint32 salt of each column's table."""
    return (tables.astype(np.uint32) + np.uint32(1)) * np.uint32(_SALT_MULTIPLIER)


def id_effects(ids: np.ndarray, tables: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Fixed pseudo-random effect in [-1, 1] of each id of each table (numpy reference).

    Args:
        ids: ``[B, C]`` integer ids, column ``c`` from table ``tables[c]``.
        tables: the table of each column (None: column ``t`` is table ``t``).

    Returns:
        ``[B, C]`` float32; the same (id, table) pair always gets the same value.
    """
    salts = _salts(_column_tables(ids.shape[1], tables))
    mixed = (ids.astype(np.uint32) + np.uint32(1)) * np.uint32(_ID_MULTIPLIER)
    mixed ^= salts
    mixed ^= mixed >> np.uint32(_MIX_SHIFT)
    mixed *= np.uint32(_MIX_MULTIPLIER)
    bits = (mixed >> np.uint32(_KEPT_SHIFT)).astype(np.float32)
    return bits * _EFFECT_SCALE - np.float32(1.0)


def tf_id_effects(ids: tf.Tensor, tables: Sequence[int] | np.ndarray | None = None) -> tf.Tensor:
    """``id_effects`` with TensorFlow ops: the same float32 values.

    Args:
        ids: ``[B, C]`` int32 or int64 ids (static ``C``).
        tables: as for ``id_effects``.
    """
    salts = tf.constant(_salts(_column_tables(ids.shape[1], tables)), tf.uint32)
    # A cast to uint32 keeps the low 32 bits, as numpy's astype does.
    mixed = (tf.cast(ids, tf.uint32) + tf.constant(1, tf.uint32)) * tf.constant(
        _ID_MULTIPLIER, tf.uint32
    )
    mixed = tf.bitwise.bitwise_xor(mixed, salts)
    mixed = tf.bitwise.bitwise_xor(
        mixed, tf.bitwise.right_shift(mixed, tf.constant(_MIX_SHIFT, tf.uint32))
    )
    mixed = mixed * tf.constant(_MIX_MULTIPLIER, tf.uint32)
    bits = tf.cast(tf.bitwise.right_shift(mixed, tf.constant(_KEPT_SHIFT, tf.uint32)), tf.float32)
    return bits * _EFFECT_SCALE - tf.constant(1.0, tf.float32)


def _hotness(num_columns: int, hotness: Sequence[int] | None) -> tuple[int, ...]:
    hotness = (1,) * num_columns if hotness is None else tuple(int(h) for h in hotness)
    if sum(hotness) != num_columns:
        raise ValueError(f"hotness {list(hotness)} sums to {sum(hotness)}, not {num_columns} ids")
    return hotness


def logit_weights(
    num_numerical: int, hotness: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column weights and table of the linear logit model.

    Returns:
        ``(a, b, tables)``: float32 ``a [C]`` per id column, float32 ``b [N]``
        per numerical, int ``tables [C]`` (each column's table).
    """
    hotness = tuple(hotness)
    tables = np.repeat(np.arange(len(hotness)), hotness)
    a = np.zeros(0, np.float32)
    if len(hotness):
        per_table = CAT_WEIGHT / (np.asarray(hotness, np.float64) * math.sqrt(len(hotness)))
        a = np.repeat(per_table, hotness).astype(np.float32)
    b = np.zeros(0, np.float32)
    if num_numerical:
        spread = np.linspace(-1.0, 1.0, num_numerical) / math.sqrt(num_numerical)
        b = (NUM_WEIGHT * spread).astype(np.float32)
    return a, b, tables


def synthetic_logits(
    numerical: np.ndarray, ids: np.ndarray, hotness: Sequence[int] | None = None
) -> np.ndarray:
    """The function the ``powerlaw`` labels are drawn from (numpy reference).

    Args:
        numerical: ``[B, N]`` float32 numerical features.
        ids: ``[B, C]`` categorical ids, ``hotness[t]`` columns per table.
        hotness: ids per row of each table (None: 1 each, ``C = F``).

    Returns:
        ``[B]`` float32 logits; ``label ~ Bernoulli(sigmoid(logit))``.
    """
    a, b, tables = logit_weights(numerical.shape[1], _hotness(ids.shape[1], hotness))
    terms = np.concatenate(
        [
            id_effects(ids, tables) * a,
            (np.asarray(numerical, np.float32) - np.float32(NUM_CENTER)) * b,
        ],
        axis=1,
    )
    # np.rint and tf.round both round half to even.
    fixed = np.rint(terms * _TO_FIXED).astype(np.int64).sum(axis=1)
    return fixed.astype(np.float32) * _FROM_FIXED + np.float32(BIAS)


def tf_synthetic_logits(
    numerical: tf.Tensor, ids: tf.Tensor, hotness: Sequence[int] | None = None
) -> tf.Tensor:
    """``synthetic_logits`` with TensorFlow ops: the same float32 values.

    Args:
        numerical: ``[B, N]`` float32 (static ``N``).
        ids: ``[B, C]`` int32 or int64 (static ``C``).
        hotness: as for ``synthetic_logits``.
    """
    a, b, tables = logit_weights(numerical.shape[1], _hotness(ids.shape[1], hotness))
    terms = tf.concat(
        [tf_id_effects(ids, tables) * a, (numerical - tf.constant(NUM_CENTER, tf.float32)) * b],
        axis=1,
    )
    fixed = tf.reduce_sum(tf.cast(tf.round(terms * _TO_FIXED), tf.int64), axis=1)
    return tf.cast(fixed, tf.float32) * _FROM_FIXED + tf.constant(BIAS, tf.float32)
