"""The reference schedule against hand-computed values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.training.lr_schedule import DLRMSchedule


def _rates(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_hand_computed_values():
    # lr 10, warm-up 4, constant until 6, decay over 4 (ends at 10)
    schedule = DLRMSchedule(10.0, warmup_steps=4, decay_start_step=6, decay_steps=4)
    steps = range(12)
    want = [2.5, 5.0, 7.5, 10.0, 10.0, 10.0, 10.0, 5.625, 2.5, 0.625, 0.0, 0.0]
    np.testing.assert_allclose(_rates(schedule, steps), want, rtol=1e-6)


def test_reference_defaults():
    schedule = DLRMSchedule(24.0)
    assert float(schedule(0)) == pytest.approx(24.0 / 8000)
    assert float(schedule(3999)) == pytest.approx(12.0)
    assert float(schedule(7999)) == pytest.approx(24.0)
    assert float(schedule(30000)) == pytest.approx(24.0)
    assert float(schedule(60000)) == pytest.approx(24.0 * 0.25)
    assert float(schedule(72000)) == 0.0


def test_no_warmup_no_decay_is_constant():
    schedule = DLRMSchedule(0.5, warmup_steps=0, decay_start_step=0, decay_steps=0)
    assert _rates(schedule, [0, 1, 10**6]) == [0.5, 0.5, 0.5]


def test_works_inside_tf_function_with_a_variable_step():
    schedule = DLRMSchedule(10.0, warmup_steps=4, decay_start_step=6, decay_steps=4)
    step = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def advance():
        rate = schedule(step)
        step.assign_add(1)
        return rate

    got = [float(advance()) for _ in range(9)]
    np.testing.assert_allclose(got, _rates(schedule, range(9)), rtol=1e-6)


def test_drives_a_keras_optimizer_and_round_trips():
    schedule = DLRMSchedule(10.0, warmup_steps=4, decay_start_step=6, decay_steps=4)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    assert float(optimizer.learning_rate) == pytest.approx(2.5)
    clone = DLRMSchedule.from_config(schedule.get_config())
    assert _rates(clone, range(12)) == _rates(schedule, range(12))
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert restored.get_config() == schedule.get_config()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(learning_rate=0), "learning_rate must be positive, got 0"),
        (dict(learning_rate=1, warmup_steps=-1), "warmup_steps must be >= 0, got -1"),
        (
            dict(learning_rate=1, warmup_steps=10, decay_start_step=5, decay_steps=3),
            r"decay_start_step \(5\) must not precede",
        ),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DLRMSchedule(**kwargs)
