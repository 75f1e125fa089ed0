"""Inference benchmark: throughput and latency percentiles of the forward pass.

Each step runs the compiled forward pass on one global batch and waits for its
result (that wait is what a serving client sees), so the per-step wall time is
the batch latency. The first `warmup_steps` (tracing, caches, thread pools)
are excluded. The batches of the split are cycled when it has fewer than the
requested steps; a short last batch is skipped, so every figure is for
batches of the configured size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf

from models.training.timing import PERCENTILES, StepTimer, TimingSummary
from models.training.timing import summarize as summarize_steps


@dataclasses.dataclass(frozen=True)
class InferenceResult:
    """Figures of the measured steps (warm-up excluded); latencies in milliseconds."""

    steps: int
    batch_size: int
    throughput: float  # samples per second
    mean_latency_ms: float
    latency_ms: dict[int, float]  # percentile -> milliseconds

    def as_dict(self) -> dict[str, float]:
        result = {
            "inference_steps": self.steps,
            "batch_size": self.batch_size,
            "throughput": self.throughput,
            "mean_latency_ms": self.mean_latency_ms,
        }
        result.update({f"p{q}_latency_ms": v for q, v in self.latency_ms.items()})
        return result


def summarize(step_seconds: np.ndarray, batch_size: int) -> InferenceResult:
    """Throughput and latency statistics of measured per-step wall times (seconds)."""
    if step_seconds.size == 0:
        raise ValueError("no measured inference steps (all were warm-up)")
    return _result(summarize_steps(step_seconds, batch_size), batch_size)


def _result(timing: TimingSummary, batch_size: int) -> InferenceResult:
    return InferenceResult(
        steps=timing.steps_measured,
        batch_size=batch_size,
        throughput=timing.samples_per_second,
        mean_latency_ms=timing.mean_ms,
        latency_ms={q: getattr(timing, f"p{q}_ms") for q in PERCENTILES},
    )


def benchmark(
    forward: Callable[[dict[str, tf.Tensor]], tf.Tensor],
    batches: Callable[[], Iterable],
    steps: int,
    warmup_steps: int,
    batch_size: int,
) -> InferenceResult:
    """Times `steps` forward passes, the first `warmup_steps` excluded.

    Args:
        forward: features -> logits ``[b, 1]``; compiled here with tf.function.
        batches: returns a fresh iterable of ``(features, labels)`` (called again
            when a pass over the split ends before `steps`); only full batches
            (``categorical`` of `batch_size` rows) are timed.
        steps: total steps, warm-up included.
        warmup_steps: steps excluded from the figures.
        batch_size: global batch size (samples per step over all ranks).
    """
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps must be in [0, steps={steps}), got {warmup_steps}")
    predict = tf.function(lambda features: tf.sigmoid(forward(features)), reduce_retracing=True)
    timer = StepTimer(batch_size, warmup_steps)
    step = 0
    while step < steps:
        before = step
        for features, _ in batches():
            if features["categorical"].shape[0] != batch_size:
                continue  # a short last batch would understate latency per batch
            timer.start()
            predict(features).numpy()  # .numpy() waits for the device
            timer.step_end()
            step += 1
            if step == steps:
                break
        if step == before:
            raise ValueError(f"the inference split has no full batch of {batch_size} rows")
    return _result(timer.summary(), batch_size)
