"""The baseline: DLRM written the obvious way in plain Keras 3, trained with `fit`."""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from models.training.lr_schedule import DLRMSchedule
from tools.bench.train.setup import PRECISIONS, BenchConfig


class PlainDotInteraction(keras.layers.Layer):
    """``[b, F + 1, D]`` -> ``[b, (F + 1) F / 2]`` pairwise dots (the plain baseline's)."""

    def call(self, features):
        n = features.shape[1]
        gram = keras.ops.matmul(features, keras.ops.transpose(features, (0, 2, 1)))
        rows, cols = np.tril_indices(n, k=-1)
        flat = keras.ops.reshape(gram, (-1, n * n))
        return keras.ops.take(flat, rows * n + cols, axis=1)


def build_plain_keras(config: BenchConfig, precision: str) -> keras.Model:
    """DLRM the way a Keras user writes it: functional model, compile(SGD), default settings."""
    keras.mixed_precision.set_global_policy(PRECISIONS[precision][0])
    keras.utils.set_random_seed(config.seed)
    numerical = keras.Input((config.num_numerical,), name="numerical")
    categorical = keras.Input((len(config.cardinalities),), dtype="int32", name="categorical")
    bottom = numerical
    for units in config.bottom_mlp_dims:
        bottom = keras.layers.Dense(units, activation="relu")(bottom)
    vectors = [
        keras.layers.Embedding(rows, config.embedding_dim)(categorical[:, i])
        for i, rows in enumerate(config.cardinalities)
    ]
    features = keras.ops.stack([bottom, *vectors], axis=1)
    top = keras.layers.Concatenate()([bottom, PlainDotInteraction()(features)])
    for units in config.top_mlp_dims[:-1]:
        top = keras.layers.Dense(units, activation="relu")(top)
    # The mixed-precision guide's advice: the output layer in float32.
    logits = keras.layers.Dense(config.top_mlp_dims[-1], dtype="float32")(top)
    model = keras.Model({"numerical": numerical, "categorical": categorical}, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=DLRMSchedule(24.0)),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


class _BatchClock(keras.callbacks.Callback):
    """Time from the start of the first batch to the end of the epoch.

    Only ``on_train_batch_begin`` is overridden, so Keras keeps its default
    asynchronous dispatch of batch-end callbacks, and the time excludes what
    `fit` does before the first batch (adapters, iterator, callbacks).
    """

    def __init__(self) -> None:
        super().__init__()
        self.start = self.end = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if batch == 0:
            self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.end = time.perf_counter()


def train_plain_keras(
    model: keras.Model, batches: tf.data.Dataset, steps: int, batch_size: int
) -> float:
    """``model.fit`` for ``steps`` steps (one epoch); returns its samples/s."""
    clock = _BatchClock()
    model.fit(
        batches,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,  # the batches are already shuffled; silences Keras' warning
        callbacks=[clock],
    )
    return steps * batch_size / (clock.end - clock.start)
