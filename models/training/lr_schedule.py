"""The reference DLRM learning-rate schedule: warm-up, constant, polynomial decay."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dlrm")
class DLRMSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, constant, then decay of power 2 to zero (DLRM reference schedule).

    With ``s`` the number of updates already applied (``optimizer.iterations``,
    0 for the first update), ``W = warmup_steps``, ``S = decay_start_step`` and
    ``K = decay_steps``, the rate of update ``s`` is::

        s < W:              lr * (s + 1) / W       (first update lr / W, update W-1 at lr)
        W <= s < S:         lr
        S <= s < S + K:     lr * ((S + K - s) / K) ** 2
        s >= S + K:         0                       (only when K > 0)

    ``W = 0`` disables the warm-up and ``K = 0`` the decay.

    Args:
        learning_rate: peak rate (24 for the reference SGD run).
        warmup_steps: W.
        decay_start_step: S, at least W when the decay is enabled.
        decay_steps: K.
    """

    def __init__(
        self,
        learning_rate: float,
        warmup_steps: int = 8000,
        decay_start_step: int = 48000,
        decay_steps: int = 24000,
    ) -> None:
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        for name, value in (
            ("warmup_steps", warmup_steps),
            ("decay_start_step", decay_start_step),
            ("decay_steps", decay_steps),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if decay_steps > 0 and decay_start_step < warmup_steps:
            raise ValueError(
                f"decay_start_step ({decay_start_step}) must not precede the end of the "
                f"warm-up (warmup_steps={warmup_steps})"
            )
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_start_step = int(decay_start_step)
        self.decay_steps = int(decay_steps)

    def __call__(self, step) -> tf.Tensor:
        # float32 counts steps exactly up to 2**24, far beyond one Criteo epoch.
        s = tf.cast(step, tf.float32)
        lr = tf.constant(self.learning_rate, tf.float32)
        rate = lr
        if self.warmup_steps > 0:
            rate = tf.where(s < self.warmup_steps, lr * (s + 1.0) / self.warmup_steps, rate)
        if self.decay_steps > 0:
            end = float(self.decay_start_step + self.decay_steps)
            remaining = tf.clip_by_value((end - s) / self.decay_steps, 0.0, 1.0)
            rate = tf.where(s >= self.decay_start_step, lr * tf.square(remaining), rate)
        return rate

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_start_step": self.decay_start_step,
            "decay_steps": self.decay_steps,
        }
