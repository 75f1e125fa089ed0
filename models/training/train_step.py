"""The training step: one compiled `tf.function` (optionally XLA).

Hybrid-parallel forward pass, float32 binary cross-entropy on logits, dynamic
loss scaling when the precision policy asks for it, dense-gradient allreduce,
and the two optimizer updates (Keras optimizer for the MLPs, sparse optimizer
for the tables this rank owns), applied only when the loss and every gradient
are finite on every rank (`models.training.nonfinite.StepGuard`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import tensorflow as tf

from models.training.nonfinite import StepGuard, all_finite

Features = dict[str, tf.Tensor]


class Parallel(Protocol):
    """What the train step needs from `models.distributed.HybridParallel`."""

    def forward(
        self, numerical: tf.Tensor, categorical: tf.Tensor, training: bool = False
    ) -> tf.Tensor: ...

    def reduce_gradients(
        self, embedding_grads: Sequence[Any], dense_grads: Sequence[Any]
    ) -> tuple[list[Any], list[Any]]: ...


def bce_with_logits(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy of `[b, 1]` logits, in float32 whatever the policy."""
    labels = tf.cast(labels, tf.float32)
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


class TrainStep:
    """One optimisation step over a global batch, compiled once.

    Args:
        parallel: distributed wrapper of the model (forward, reduce_gradients).
        dense_variables: MLP variables, updated by `dense_optimizer` after the
            allreduce.
        embedding_variables: the table variables this rank owns, updated by
            `embedding_optimizer` with their (sparse) gradients, never reduced.
        dense_optimizer: a Keras optimizer.
        embedding_optimizer: the sparse optimizer (`apply_gradients(pairs)`).
        loss_scale: initial dynamic loss scale (float16 policies) or None;
            used when ``guard`` is not given.
        jit_compile: compile the step with XLA.
        guard: records non-finite steps and holds the loss scale; default: a
            ``StepGuard("stop", loss_scale)``.
    """

    def __init__(
        self,
        parallel: Parallel,
        dense_variables: Sequence[tf.Variable],
        embedding_variables: Sequence[tf.Variable],
        dense_optimizer: Any,
        embedding_optimizer: Any,
        loss_scale: float | None = None,
        jit_compile: bool = False,
        guard: StepGuard | None = None,
    ) -> None:
        self._parallel = parallel
        self._dense_variables = list(dense_variables)
        self._embedding_variables = list(embedding_variables)
        self._dense_optimizer = dense_optimizer
        self._embedding_optimizer = embedding_optimizer
        self.guard = guard or StepGuard("stop", loss_scale)
        # The updates run inside a tf.cond branch, where no variable may be created:
        # optimizer slots are made now.
        if not getattr(dense_optimizer, "built", True):
            dense_optimizer.build(self._dense_variables)
        if hasattr(embedding_optimizer, "build"):
            embedding_optimizer.build(self._embedding_variables)
        self._function = tf.function(self._step, jit_compile=jit_compile, reduce_retracing=True)

    def __call__(self, features: Features, labels: tf.Tensor) -> tf.Tensor:
        """Runs one step; returns this rank's mean loss (a device tensor, not synced)."""
        return self._function(features, labels)

    def _step(self, features: Features, labels: tf.Tensor) -> tf.Tensor:
        variables = self._dense_variables + self._embedding_variables
        with tf.GradientTape() as tape:
            logits = self._parallel.forward(
                features["numerical"], features["categorical"], training=True
            )
            loss = bce_with_logits(labels, logits)
            # Scaling keeps small float16 gradients of the dense part from flushing to 0.
            scaled = self.guard.scale_loss(loss)
        gradients = self.guard.unscale(tape.gradient(scaled, variables))
        num_dense = len(self._dense_variables)
        embedding_gradients, reduced = self._parallel.reduce_gradients(
            gradients[num_dense:], [*gradients[:num_dense], self.nonfinite_flag(loss, gradients)]
        )
        return self.apply_if_finite(loss, reduced[:-1], embedding_gradients, reduced[-1])

    def nonfinite_flag(self, loss: tf.Tensor, gradients: Sequence[Any]) -> tf.Tensor:
        """1.0 where this rank's loss or gradients hold a NaN/Inf, else 0.0.

        It rides the dense allreduce (no extra collective), so that every rank
        takes the same decision in `apply_if_finite`.
        """
        finite = tf.logical_and(tf.math.is_finite(loss), all_finite(gradients))
        return tf.cast(tf.logical_not(finite), tf.float32)

    def apply_if_finite(
        self,
        loss: tf.Tensor,
        dense_gradients: Sequence[Any],
        embedding_gradients: Sequence[Any],
        any_bad: tf.Tensor,
    ) -> tf.Tensor:
        """Applies both updates unless ``any_bad`` (the reduced flag) is set; records the step.

        Returns ``loss``.
        """
        finite = tf.equal(any_bad, 0.0)

        def apply() -> tf.Tensor:
            self._dense_optimizer.apply_gradients(
                zip(dense_gradients, self._dense_variables, strict=True)
            )
            self._embedding_optimizer.apply_gradients(
                zip(embedding_gradients, self._embedding_variables, strict=True)
            )
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        self.guard.record(finite, loss)
        return loss
