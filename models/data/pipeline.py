"""Shared tf.data plumbing of the binary and synthetic datasets.

Both produce whole batches (no per-sample Python; the binary reader with
TensorFlow ops in file order and with numpy through ``make_dataset`` in a
shuffled order, the synthetic generator with TensorFlow ops, using
``batch_order`` and ``element_spec`` only) and expose them through the
same element structure (DEVELOPERS.md, "Input
element"): ``({"numerical": float32 [b, N], "categorical": int32 [B, C]},
labels float32 [b, 1])``, where ``C`` is the sum of the hotness of the tables
read (``T`` when all are single-valued).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from models.data.metadata import DatasetError

# (numerical [b, N] float32, categorical [B, C] int32, labels [b, 1] float32)
BatchArrays = tuple[np.ndarray, np.ndarray, np.ndarray]
Element = tuple[dict[str, tf.Tensor], tf.Tensor]


def batch_order(
    num_batches: int, start_batch: int = 0, shuffle: bool = False, seed: int = 0, epoch: int = 0
) -> np.ndarray:
    """Indices of the batches an epoch visits, from ``start_batch`` on.

    With ``shuffle`` the order is a permutation drawn from ``(seed, epoch)``,
    so a run resumed at ``start_batch`` of an epoch visits the same batches
    as the uninterrupted run did.

    Raises:
        ValueError: If ``start_batch`` is outside ``[0, num_batches]``.
    """
    if not 0 <= start_batch <= num_batches:
        raise ValueError(f"start_batch must be in [0, {num_batches}], got {start_batch}")
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(num_batches)
    else:
        order = np.arange(num_batches)
    return order[start_batch:].astype(np.int64)


def element_spec(
    local_rows: int | None, global_rows: int | None, num_numerical: int, num_columns: int
) -> Element:
    """TensorSpecs of one element; ``None`` rows where batch sizes vary.

    ``num_columns``: id columns, the sum of the hotness of the tables read.
    """
    features = {
        "numerical": tf.TensorSpec([local_rows, num_numerical], tf.float32),
        "categorical": tf.TensorSpec([global_rows, num_columns], tf.int32),
    }
    return features, tf.TensorSpec([local_rows, 1], tf.float32)


def make_dataset(
    order: np.ndarray,
    read_batch: Callable[[int], BatchArrays],
    spec: Element,
    prefetch_batches: int,
    parallel_batches: int,
) -> tf.data.Dataset:
    """A dataset that calls ``read_batch(i)`` for each ``i`` in ``order``.

    ``read_batch`` runs in TensorFlow's thread pool, ``parallel_batches`` at a
    time; the order of elements is kept (deterministic map).
    """
    features_spec, labels_spec = spec

    def read(index: np.ndarray) -> tuple[np.ndarray, ...]:
        try:
            return (*read_batch(int(index)), np.bytes_(b""))
        except DatasetError as error:
            # Raised through numpy_function, the error would reach the user wrapped
            # in Python tracebacks (TensorFlow logs them); a failed graph assertion
            # carries the one-line message alone. Empty arrays are never used.
            empty = (
                np.zeros((0, features_spec["numerical"].shape[1]), np.float32),
                np.zeros((0, features_spec["categorical"].shape[1]), np.int32),
                np.zeros((0, 1), np.float32),
            )
            return (*empty, np.bytes_(f"DatasetError: {error}".encode()))

    def to_element(index: tf.Tensor) -> Element:
        numerical, categorical, labels, error = tf.numpy_function(
            read, [index], [tf.float32, tf.int32, tf.float32, tf.string], stateful=False
        )
        check = tf.debugging.Assert(tf.equal(error, ""), [error])
        with tf.control_dependencies([check]):
            numerical, categorical, labels = (
                tf.identity(numerical),
                tf.identity(categorical),
                tf.identity(labels),
            )
        # numpy_function loses shapes; restore what is static.
        numerical.set_shape(features_spec["numerical"].shape)
        categorical.set_shape(features_spec["categorical"].shape)
        labels.set_shape(labels_spec.shape)
        return {"numerical": numerical, "categorical": categorical}, labels

    dataset = tf.data.Dataset.from_tensor_slices(order)
    dataset = dataset.map(to_element, num_parallel_calls=parallel_batches, deterministic=True)
    return dataset.prefetch(prefetch_batches)
