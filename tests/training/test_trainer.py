"""Train step (loss, loss scaling, sparse + dense updates) and the training loop."""

from __future__ import annotations

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.dlrm import DLRM
from models.training.early_stopping import BestSoFar
from models.training.loop import LoopSettings
from models.training.profiler import ProfilerWindow
from models.training.train_step import TrainStep, bce_with_logits
from models.training.trainer import Trainer

CARDINALITIES = (7, 5, 3)


class _SingleProcess:
    """The world-size-1 behaviour of HybridParallel: forward is the model, no reduction."""

    def __init__(self, model: DLRM) -> None:
        self.model = model

    def forward(self, numerical, categorical, training=False):
        return self.model({"numerical": numerical, "categorical": categorical}, training=training)

    def reduce_gradients(self, embedding_grads, dense_grads):
        return list(embedding_grads), list(dense_grads)


def _model(seed: int = 1) -> DLRM:
    keras.utils.set_random_seed(seed)
    return DLRM(CARDINALITIES, embedding_dim=4, bottom_mlp_dims=(8, 4), top_mlp_dims=(8, 1))


def _batch(rows: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    categorical = np.stack([rng.integers(0, n, rows) for n in CARDINALITIES], axis=1)
    numerical = rng.normal(size=(rows, 13)).astype(np.float32)
    # Learnable labels: a function of one table's id and one numerical feature.
    labels = ((categorical[:, 0] % 2 == 0) ^ (numerical[:, 0] > 0)).astype(np.float32)
    features = {
        "numerical": tf.constant(numerical),
        "categorical": tf.constant(categorical.astype(np.int32)),
    }
    return features, tf.constant(labels[:, None])


def _step(model: DLRM, loss_scale: float | None = None, lr: float = 0.1) -> TrainStep:
    return TrainStep(
        _SingleProcess(model),
        model.dense_variables,
        model.embedding_variables,
        keras.optimizers.SGD(lr),
        keras.optimizers.SGD(lr),
        loss_scale=loss_scale,
    )


def test_bce_matches_the_formula_in_float32() -> None:
    labels = tf.constant([[1.0], [0.0], [1.0]])
    logits = tf.constant([[2.0], [-1.0], [-3.0]], tf.float16)
    p = 1 / (1 + np.exp(-np.array([2.0, -1.0, -3.0])))
    expected = -np.mean(np.log([p[0], 1 - p[1], p[2]]))
    loss = bce_with_logits(labels, logits)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)


def test_loss_scaling_gives_the_same_update_as_no_scaling() -> None:
    features, labels = _batch()
    plain, scaled = _model(), _model()
    _step(plain)(features, labels)
    _step(scaled, loss_scale=1024.0)(features, labels)
    for a, b in zip(plain.trainable_variables, scaled.trainable_variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_step_updates_only_the_looked_up_rows_and_lowers_the_loss() -> None:
    model = _model()
    features, labels = _batch()
    # Table 0 only sees ids 0..3 in this batch: rows 4..6 must not move.
    features["categorical"] = tf.concat(
        [features["categorical"][:, :1] % 4, features["categorical"][:, 1:]], axis=1
    )
    before = model.embedding_variables[0].numpy().copy()
    step = _step(model)
    losses = [float(step(features, labels)) for _ in range(60)]
    after = model.embedding_variables[0].numpy()
    np.testing.assert_array_equal(before[4:], after[4:])
    assert not np.allclose(before[:4], after[:4])
    assert losses[-1] < 0.7 * losses[0], losses


def test_eval_points_are_evenly_spaced_and_include_the_epoch_end() -> None:
    assert LoopSettings(epochs=1, steps_per_epoch=10, evals_per_epoch=2).eval_points() == {4, 9}
    assert LoopSettings(epochs=1, steps_per_epoch=10, evals_per_epoch=1).eval_points() == {9}
    assert LoopSettings(epochs=1, steps_per_epoch=3, evals_per_epoch=5).eval_points() == {0, 1, 2}
    assert LoopSettings(epochs=1, steps_per_epoch=10, evals_per_epoch=0).eval_points() == set()
    assert LoopSettings(epochs=2, steps_per_epoch=10, max_steps=15).total_steps == 15


class _RecordingHooks:
    def __init__(self, aucs: dict[int, float] | None = None) -> None:
        self.progress_steps: list[int] = []
        self.eval_steps: list[int] = []
        self.checkpoints: list[tuple[int, int, int]] = []
        self.best_checkpoints: list[tuple[int, int, int]] = []
        self.aucs = aucs  # step -> AUC of a scripted run

    def progress(self, step: int, metrics: dict[str, float]) -> None:
        assert {"loss", "learning_rate", "epoch"} <= set(metrics)
        assert metrics.get("samples_per_second", 1.0) > 0
        self.progress_steps.append(step)

    def evaluate(self, step: int, alive) -> types.SimpleNamespace:
        self.eval_steps.append(step)
        auc = 0.5 + step / 1000 if self.aucs is None else self.aucs[step]
        return types.SimpleNamespace(auc=auc, log_loss=0.6)

    def save_checkpoint(self, step: int, epoch: int, batch: int, best: bool = False) -> None:
        (self.best_checkpoints if best else self.checkpoints).append((step, epoch, batch))


def _fake_batches(seen: list[tuple[int, int]], steps_per_epoch: int):
    def batches(epoch: int, start_batch: int):
        for batch in range(start_batch, steps_per_epoch):
            seen.append((epoch, batch))
            yield {"x": tf.constant([float(batch)])}, tf.constant([[0.0]])

    return batches


def _run(settings: LoopSettings, aucs=None, best=None, **position):
    hooks, seen = _RecordingHooks(aucs), []
    trainer = Trainer(
        lambda features, labels: tf.reduce_sum(features["x"]),
        settings,
        hooks,
        learning_rate=lambda step: 0.1,
        best=best,
    )
    result = trainer.fit(_fake_batches(seen, settings.steps_per_epoch), **position)
    return result, hooks, seen


def test_loop_evaluates_checkpoints_and_prints_on_schedule() -> None:
    settings = LoopSettings(
        epochs=2,
        steps_per_epoch=6,
        evals_per_epoch=2,
        print_freq=4,
        checkpoint_every_n_steps=5,
        global_batch_size=8,
    )
    result, hooks, seen = _run(settings)
    assert result.steps == 12 and len(seen) == 12
    assert hooks.eval_steps == [3, 6, 9, 12]
    assert hooks.progress_steps == [4, 8, 12]
    # (step, next epoch, next batch): step 5 leaves batch 5 of epoch 0 to read next.
    assert hooks.checkpoints == [(5, 0, 5), (10, 1, 4), (12, 2, 0)]
    assert result.best_auc == pytest.approx(0.512) and result.last_auc == pytest.approx(0.512)
    assert result.measured_steps == 12 and result.samples_per_second > 0


def test_max_steps_stops_and_evaluates_the_final_weights() -> None:
    settings = LoopSettings(epochs=3, steps_per_epoch=6, max_steps=8, evals_per_epoch=1)
    result, hooks, seen = _run(settings)
    assert result.steps == 8 and len(seen) == 8
    assert hooks.eval_steps == [6, 8]
    assert hooks.checkpoints == [(8, 1, 2)]


def test_resume_continues_from_the_data_position() -> None:
    settings = LoopSettings(epochs=2, steps_per_epoch=6, evals_per_epoch=0)
    result, hooks, seen = _run(settings, start_step=8, start_epoch=1, start_batch=2)
    assert seen == [(1, b) for b in range(2, 6)]
    assert result.steps == 12 and hooks.eval_steps == []


def test_final_checkpoint_records_the_data_position_not_step_arithmetic() -> None:
    # Resumed from a checkpoint written with another batch size: 8 steps were one
    # epoch then, 6 are now. The next run must start at epoch 2, batch 0.
    settings = LoopSettings(epochs=2, steps_per_epoch=6, evals_per_epoch=0)
    result, hooks, seen = _run(settings, start_step=8, start_epoch=1, start_batch=0)
    assert result.steps == 14
    assert seen == [(1, b) for b in range(6)]
    assert hooks.checkpoints == [(14, 2, 0)]


def test_warmup_steps_are_not_measured_and_step_times_recorded() -> None:
    settings = LoopSettings(
        epochs=1,
        steps_per_epoch=10,
        evals_per_epoch=0,
        benchmark_warmup_steps=3,
        record_step_times=True,
    )
    result, _, _ = _run(settings)
    assert result.measured_steps == 7 and len(result.step_times_s) == 7


def test_profiler_window_writes_a_trace(tmp_path) -> None:
    log_dir = str(tmp_path / "profile")
    window = ProfilerWindow(True, start=2, steps=2, log_dir=log_dir)
    x = tf.Variable(1.0)
    for step in range(1, 6):
        window.before_step(step)
        x.assign_add(1.0)
        window.after_step(step, lambda: None)
    window.close(lambda: None)
    traces = [f for _, _, files in os.walk(log_dir) for f in files if ".xplane.pb" in f]
    assert traces, f"no trace under {log_dir}"


def test_float16_policy_with_loss_scale_tracks_float32_training() -> None:
    """The MLU/GPU AMP path (mixed_float16 + static loss scale), run on the CPU."""
    features, labels = _batch(64)
    reference = _step(_model())
    expected = [float(reference(features, labels)) for _ in range(40)]
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()  # same seed: same initial weights as the float32 model
        step = _step(model, loss_scale=1024.0)
        losses = [float(step(features, labels)) for _ in range(40)]
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert expected[-1] < 0.9 * expected[0]
    # float16 activations: the same trajectory within half-precision error.
    np.testing.assert_allclose(losses, expected, rtol=2e-2)
    assert all(v.dtype == "float32" for v in model.embedding_variables)


def test_throughput_counts_a_short_last_batch_with_its_real_rows() -> None:
    # 5 full global batches of 8 rows and a last one of 2: 42 samples, not 48.
    def batches(epoch: int, start_batch: int):
        for batch in range(start_batch, 6):
            rows = 2 if batch == 5 else 8
            yield {"categorical": tf.zeros((rows, 3), tf.int32)}, tf.zeros((rows, 1))

    settings = LoopSettings(epochs=1, steps_per_epoch=6, evals_per_epoch=0, global_batch_size=8)
    hooks = _RecordingHooks()
    trainer = Trainer(
        lambda features, labels: tf.reduce_sum(labels), settings, hooks, lambda step: 0.1
    )
    result = trainer.fit(batches)
    assert result.measured_steps == 6 and result.train_seconds > 0
    assert result.samples_per_second * result.train_seconds == pytest.approx(42)


# An overfitting run: the AUC peaks at step 6, then falls.
PEAKED = {3: 0.70, 6: 0.74, 9: 0.73, 12: 0.72, 15: 0.71, 18: 0.69}


def test_a_new_best_auc_is_checkpointed_as_the_best_one() -> None:
    settings = LoopSettings(epochs=3, steps_per_epoch=6, evals_per_epoch=2)
    best = BestSoFar()
    result, hooks, _ = _run(settings, aucs=PEAKED, best=best)
    assert result.steps == 18 and not result.stopped_early
    # Steps 3 and 6 improved; the data position is the one after the step.
    assert hooks.best_checkpoints == [(3, 0, 3), (6, 1, 0)]
    assert (best.auc, best.step, best.evals_without_improvement) == (0.74, 6, 4)
    assert hooks.checkpoints == [(18, 3, 0)]  # the latest is still written


def test_early_stopping_ends_after_patience_evaluations_without_improvement() -> None:
    settings = LoopSettings(
        epochs=3, steps_per_epoch=6, evals_per_epoch=2, checkpoint_every_n_steps=4
    )
    best = BestSoFar(patience=2)
    result, hooks, seen = _run(settings, aucs=PEAKED, best=best)
    assert result.stopped_early and result.steps == 12 and len(seen) == 12
    assert hooks.eval_steps == [3, 6, 9, 12]
    assert hooks.best_checkpoints == [(3, 0, 3), (6, 1, 0)]
    # Periodic 4 and 8, then the final one at the stopping step.
    assert hooks.checkpoints == [(4, 0, 4), (8, 1, 2), (12, 2, 0)]
    assert (best.auc, best.step) == (0.74, 6)


def test_resumed_best_so_far_keeps_its_patience_count() -> None:
    # Resumed after step 9 of PEAKED with one evaluation already without improvement.
    best = BestSoFar(patience=2)
    best.resume({"auc": 0.74, "step": 6, "evals_without_improvement": 1, "checkpoint": "b"})
    settings = LoopSettings(epochs=3, steps_per_epoch=6, evals_per_epoch=2)
    result, hooks, _ = _run(
        settings, aucs=PEAKED, best=best, start_step=9, start_epoch=1, start_batch=3
    )
    assert result.stopped_early and hooks.eval_steps == [12]
    assert hooks.best_checkpoints == [] and best.checkpoint == "b"


def test_an_evaluation_without_auc_neither_improves_nor_counts() -> None:
    best = BestSoFar(patience=1)
    assert best.observe(1, 0.6) and not best.observe(2, None) and not best.should_stop
    assert not best.observe(3, 0.6) and best.should_stop  # equal is no improvement
    assert best.record() == {
        "auc": 0.6,
        "step": 1,
        "evals_without_improvement": 1,
        "checkpoint": None,
    }
    # A kept best checkpoint that scored higher is adopted, a lower one is not.
    assert not best.adopt_if_better({"auc": 0.55, "step": 9, "checkpoint": "x"})
    assert best.adopt_if_better({"auc": 0.65, "step": 9, "checkpoint": "x"})
    assert (best.auc, best.step, best.checkpoint) == (0.65, 9, "x")
