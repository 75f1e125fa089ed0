"""Pooled lookup of a multi-hot feature: the sum or mean of its ids' vectors.

A multi-hot feature holds up to ``h`` ids per sample (its hotness), padded
with a negative id (``models.data.feature_spec.PAD_ID``) where a sample has
fewer. Its embedding is the sum or the mean of the looked-up rows of the
valid ids; a sample without any valid id gets a zero vector.

Only the valid ids are looked up (a mask, then one gather and one segment
sum): the table's gradient is an ``IndexedSlices`` of exactly those rows, so
a row-sparse optimizer touches nothing for the padding (a padded slot mapped
to row 0 with a zero gradient would still move row 0's Adam moments), and
ids repeated inside a bag, or across the batch, appear once per occurrence,
summed by the optimizer. Cost: O(B x h x D) forward and backward.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

COMBINERS = ("sum", "mean")


def pooled_lookup(
    lookup: Callable[[tf.Tensor], tf.Tensor], ids: tf.Tensor, combiner: str = "sum"
) -> tf.Tensor:
    """Pools the vectors of each row's valid ids.

    Args:
        lookup: ``ids [n] -> [n, D]`` float (an :class:`EmbeddingTable`).
        ids: ``[B, h]`` integer ids; entries < 0 are padding.
        combiner: ``"sum"`` or ``"mean"`` (over the row's valid ids).

    Returns:
        ``[B, D]`` in the lookup's dtype; zeros for a row without valid ids.
    """
    if combiner not in COMBINERS:
        raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}")
    if len(ids.shape) != 2:
        raise ValueError(f"pooled_lookup expects ids of shape [B, h], got shape {ids.shape}")
    valid = ids >= 0
    # Row index of every valid id, row-major: the segments of the sum.
    positions = tf.where(valid)
    vectors = lookup(tf.gather_nd(ids, positions))
    rows = tf.shape(ids, out_type=positions.dtype)[0]
    pooled = tf.math.unsorted_segment_sum(vectors, positions[:, 0], rows)
    if combiner == "mean":
        counts = tf.reduce_sum(tf.cast(valid, pooled.dtype), axis=1, keepdims=True)
        pooled = pooled / tf.maximum(counts, 1.0)
    # The segment count is a tensor: restore the static batch and dim.
    pooled.set_shape(ids.shape[:1].concatenate(vectors.shape[1:]))
    return pooled
