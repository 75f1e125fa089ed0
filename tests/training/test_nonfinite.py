"""The step guard's record of non-finite steps and its dynamic loss scale (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from models.training.nonfinite import NonFiniteError, StepGuard, all_finite


def _steps(guard: StepGuard, outcomes: list[tuple[bool, float]]) -> None:
    record = tf.function(guard.record)
    for finite, loss in outcomes:
        record(tf.constant(finite), tf.constant(loss))


def test_all_finite_sees_dense_sparse_and_missing_gradients() -> None:
    sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0]]), tf.constant([3]), tf.constant([5, 2]))
    assert bool(all_finite([tf.ones([2]), sparse, None]))
    bad = tf.IndexedSlices(tf.constant([[1.0, np.inf]]), tf.constant([3]), tf.constant([5, 2]))
    assert not bool(all_finite([tf.ones([2]), bad]))
    assert not bool(all_finite([tf.constant([0.0, np.nan])]))
    assert bool(all_finite([]))
    # Opposite infinities in different tensors, and a NaN among large values.
    assert not bool(all_finite([tf.constant([np.inf]), tf.constant([-np.inf])]))
    assert not bool(all_finite([tf.constant([3e38, np.nan, -3e38])]))
    assert not bool(all_finite([tf.constant([1.0, np.inf], tf.bfloat16)]))
    assert bool(all_finite([tf.constant([3e38, -3e38, 1.0])]))


def test_stop_mode_stops_at_the_first_non_finite_step_naming_it() -> None:
    guard = StepGuard("stop")
    guard.start(10)  # a resumed run: the next step is 11
    _steps(guard, [(True, 0.5), (True, 0.4)])
    assert guard.check(last_saved_step=12).skipped == 0
    _steps(guard, [(False, math.nan), (True, 0.3)])
    with pytest.raises(NonFiniteError) as raised:
        guard.check(last_saved_step=12)
    assert str(raised.value) == (
        "non-finite loss at step 13 (loss nan); the run stopped, nothing after step 12 was "
        "saved; --on_nonfinite=skip skips such steps"
    )


def test_finite_loss_with_non_finite_gradients_is_named_as_such() -> None:
    guard = StepGuard("stop")
    _steps(guard, [(False, 0.75)])
    with pytest.raises(NonFiniteError, match=r"^non-finite gradients at step 1 \(loss 0\.75\)"):
        guard.check(0)


def test_skip_mode_counts_and_stops_only_after_too_many_in_a_row() -> None:
    guard = StepGuard("skip", max_in_a_row=3)
    _steps(guard, [(False, math.inf), (False, math.nan), (True, 0.5), (False, math.nan)])
    state = guard.check(0)
    assert (state.skipped, state.tripped_at, state.loss_scale) == (3, -1, None)
    _steps(guard, [(False, math.nan), (False, math.inf), (True, 0.5), (False, math.nan)])
    with pytest.raises(NonFiniteError) as raised:
        guard.check(4)
    assert str(raised.value) == (
        "non-finite loss or gradients at steps 4..6 (3 in a row, each skipped; last loss inf); "
        "the run stopped, nothing after step 4 was saved"
    )
    assert guard.state().skipped == 6


def test_dynamic_loss_scale_halves_on_overflow_and_doubles_after_good_steps() -> None:
    guard = StepGuard("stop", loss_scale=8.0, growth_interval=3, max_in_a_row=5)
    scales = []
    for finite in [True, False, False, True, True, True, True, False, False, False, False]:
        _steps(guard, [(finite, 0.5 if finite else math.inf)])
        scales.append(guard.state().loss_scale)
    #            ok   bad  bad  ok   ok   ok (3 good: x2)  ok   bad  bad  bad (floor 1) bad
    assert scales == [8.0, 4.0, 2.0, 2.0, 2.0, 4.0, 4.0, 2.0, 1.0, 1.0, 1.0]
    assert guard.check(0).skipped == 6  # stop mode under scaling tolerates these
    _steps(guard, [(False, math.inf)])  # the fifth in a row
    with pytest.raises(NonFiniteError, match=r"steps 8\.\.12 \(5 in a row, each skipped, loss "):
        guard.check(0)


def test_scaling_multiplies_the_loss_and_divides_dense_and_sparse_gradients() -> None:
    guard = StepGuard(loss_scale=1024.0)
    assert float(guard.scale_loss(tf.constant(0.5))) == 512.0
    sparse = tf.IndexedSlices(tf.constant([[2048.0]]), tf.constant([1]), tf.constant([4, 1]))
    dense, unscaled_sparse, none = guard.unscale([tf.constant([1024.0]), sparse, None])
    assert dense.numpy().tolist() == [1.0] and none is None
    assert unscaled_sparse.values.numpy().tolist() == [[2.0]]
    plain = StepGuard()
    assert float(plain.scale_loss(tf.constant(0.5))) == 0.5 and plain.state().loss_scale is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_nonfinite": "ignore"}, "on_nonfinite must be one of"),
        ({"loss_scale": 0.0}, "loss_scale must be a finite positive number, got 0.0"),
    ],
)
def test_invalid_settings_are_named(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        StepGuard(**kwargs)


def test_a_loaded_scale_state_continues_the_scale_and_its_growth_count() -> None:
    guard = StepGuard("stop", loss_scale=1024.0, growth_interval=3)
    guard.load_scale_state({"scale": 2.0, "good_steps": 2})
    assert guard.scale_state() == {"scale": 2.0, "good_steps": 2}
    _steps(guard, [(True, 0.5)])  # the third finite step in a row: the scale doubles
    assert guard.scale_state() == {"scale": 4.0, "good_steps": 0}
    unscaled = StepGuard("stop")
    unscaled.load_scale_state({"scale": 2.0, "good_steps": 2})  # a bf16 run: ignored
    assert unscaled.scale_state() is None and unscaled.state().loss_scale is None
