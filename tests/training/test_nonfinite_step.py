"""The train step never applies a non-finite update; the loop stops before checkpointing it."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.training.loop import LoopSettings
from models.training.nonfinite import NonFiniteError, StepGuard
from models.training.train_step import TrainStep
from models.training.trainer import Trainer
from tests.training.test_trainer import _batch, _model, _RecordingHooks, _SingleProcess


class _NaNGradients(_SingleProcess):
    """The model's forward pass; while ``armed``, the logits' gradient is NaN.

    A step whose loss is finite and whose gradients are not, by construction:
    the NaN enters on the backward pass through a select, never through a max
    or ReLU, so every CPU computes the same thing. (A NaN input is no such case:
    the bottom MLP's fused matmul + ReLU turns it into 0 under oneDNN, which
    TensorFlow uses by default on CPUs with AVX-512 VNNI or BF16 or AMX, and
    keeps it NaN under Eigen, the default elsewhere, e.g. on AMD Zen 3.)
    """

    def __init__(self, model) -> None:
        super().__init__(model)
        self.armed = tf.Variable(False, trainable=False)

    def forward(self, numerical, categorical, training=False):
        armed = self.armed.read_value()

        @tf.custom_gradient
        def nan_gradient(logits):
            def gradient(upstream):
                return tf.where(armed, tf.constant(np.nan, upstream.dtype), upstream)

            return tf.identity(logits), gradient

        return nan_gradient(super().forward(numerical, categorical, training=training))


def _step(model, guard: StepGuard, lr: float = 0.1, parallel=None) -> TrainStep:
    return TrainStep(
        parallel or _SingleProcess(model),
        model.dense_variables,
        model.embedding_variables,
        keras.optimizers.SGD(lr),
        keras.optimizers.SGD(lr),
        guard=guard,
    )


def _weights(model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in model.trainable_variables]


def _poisoned(features: dict, row: int = 3) -> dict:
    numerical = features["numerical"].numpy().copy()
    numerical[row, 2] = np.nan
    return {**features, "numerical": tf.constant(numerical)}


def _nan_label(labels: tf.Tensor, row: int = 5) -> tf.Tensor:
    # The loss's label x logit term is NaN whatever the logit: no CPU-dependent op on the way.
    return tf.where(tf.range(labels.shape[0])[:, None] == row, np.nan, labels)


def _assert_second_step_skipped(step: TrainStep, model, features, labels, bad_step) -> float:
    """Runs a good step, ``bad_step()``, a good step; the bad one changed nothing."""
    step(features, labels)
    before = _weights(model)
    loss = float(bad_step())
    for a, b in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)  # the bad step changed nothing
    step(features, labels)
    assert all(np.isfinite(w).all() for w in _weights(model))
    assert any(not np.array_equal(a, b) for a, b in zip(before, _weights(model), strict=True))
    assert step.guard.check(0).skipped == 1
    return loss


def test_a_nan_loss_is_not_applied() -> None:
    features, labels = _batch()
    model = _model()
    step = _step(model, StepGuard("skip"))
    bad = functools.partial(step, features, _nan_label(labels))
    assert np.isnan(_assert_second_step_skipped(step, model, features, labels, bad))


def test_nan_gradients_with_a_finite_loss_are_not_applied() -> None:
    features, labels = _batch()
    model = _model()
    parallel = _NaNGradients(model)
    step = _step(model, StepGuard("skip"), parallel=parallel)

    def bad() -> tf.Tensor:
        parallel.armed.assign(True)
        try:
            return step(features, labels)
        finally:
            parallel.armed.assign(False)

    assert np.isfinite(_assert_second_step_skipped(step, model, features, labels, bad))


def test_a_nan_input_is_not_applied_whether_the_loss_or_only_the_gradients_show_it() -> None:
    # Which of the two depends on the CPU (see `_NaNGradients`); the contract does not.
    features, labels = _batch()
    model = _model()
    step = _step(model, StepGuard("skip"))
    bad = functools.partial(step, _poisoned(features), labels)
    _assert_second_step_skipped(step, model, features, labels, bad)


def test_float16_overflow_skips_steps_and_lowers_the_scale_until_training_proceeds() -> None:
    """The MLU/GPU AMP path (mixed_float16, dynamic loss scale), forced on the CPU."""
    features, labels = _batch(64)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
        # 2**24 times the loss overflows float16 gradients (max 65504).
        step = _step(model, StepGuard("stop", loss_scale=2.0**24, growth_interval=1000))
        initial = _weights(model)
        losses = [float(step(features, labels)) for _ in range(30)]
    finally:
        keras.mixed_precision.set_global_policy(previous)
    state = step.guard.check(0)  # stop mode tolerates isolated overflows under scaling
    assert 1 <= state.skipped < 20 and state.loss_scale == 2.0**24 / 2**state.skipped
    assert all(np.isfinite(w).all() for w in _weights(model))
    assert any(not np.array_equal(a, b) for a, b in zip(initial, _weights(model), strict=True))
    assert losses[-1] < 0.95 * losses[state.skipped]  # the applied steps trained


def test_the_loop_stops_at_a_nan_step_before_the_next_checkpoint() -> None:
    features, labels = _batch()
    bad_labels = _nan_label(labels)

    def batches(epoch: int, start_batch: int):
        for batch in range(start_batch, 10):
            yield features, (bad_labels if batch == 6 else labels)  # step 7 is non-finite

    model = _model()
    hooks = _RecordingHooks()
    settings = LoopSettings(
        epochs=1, steps_per_epoch=10, evals_per_epoch=0, print_freq=100, checkpoint_every_n_steps=3
    )
    trainer = Trainer(_step(model, StepGuard("stop")), settings, hooks, lambda step: 0.1)
    with pytest.raises(
        NonFiniteError,
        match=r"^non-finite loss at step 7 \(loss nan\); .* "
        r"nothing after step 6 was saved",
    ):
        trainer.fit(batches)
    assert [c[0] for c in hooks.checkpoints] == [3, 6]  # not 9, nor a final one


def test_non_finite_gradients_with_a_finite_loss_stop_the_run_too() -> None:
    features, labels = _batch()
    model = _model()
    parallel = _NaNGradients(model)

    def batches(epoch: int, start_batch: int):
        for batch in range(start_batch, 4):
            parallel.armed.assign(batch == 1)  # step 2; the loop runs each step as it gets it
            yield features, labels

    settings = LoopSettings(epochs=1, steps_per_epoch=4, evals_per_epoch=0, print_freq=100)
    step = _step(model, StepGuard(), parallel=parallel)
    trainer = Trainer(step, settings, _RecordingHooks(), lambda s: 0.1)
    with pytest.raises(NonFiniteError, match=r"^non-finite gradients at step 2 \(loss 0\.\d+\)"):
        trainer.fit(batches)


def test_a_nan_input_stops_the_run_at_its_step() -> None:
    features, labels = _batch()
    bad = _poisoned(features)

    def batches(epoch: int, start_batch: int):
        for batch in range(start_batch, 4):
            yield (bad if batch == 1 else features), labels

    settings = LoopSettings(epochs=1, steps_per_epoch=4, evals_per_epoch=0, print_freq=100)
    trainer = Trainer(_step(_model(), StepGuard()), settings, _RecordingHooks(), lambda s: 0.1)
    # "loss nan" where the CPU's ReLU keeps the NaN, "gradients" where it drops it.
    with pytest.raises(
        NonFiniteError, match=r"^non-finite (loss at step 2 \(loss nan\)|gradients at step 2 \()"
    ):
        trainer.fit(batches)


def test_skip_mode_trains_through_a_nan_step_and_reports_it() -> None:
    features, labels = _batch()
    bad = _poisoned(features)

    def batches(epoch: int, start_batch: int):
        for batch in range(start_batch, 8):
            yield (bad if batch == 2 else features), labels

    hooks = _RecordingHooks()
    settings = LoopSettings(epochs=1, steps_per_epoch=8, evals_per_epoch=0, print_freq=4)
    trainer = Trainer(_step(_model(), StepGuard("skip")), settings, hooks, lambda step: 0.1)
    result = trainer.fit(batches)
    assert result.steps == 8 and result.skipped_steps == 1
    assert np.isfinite(result.final_loss) and hooks.checkpoints == [(8, 1, 0)]
