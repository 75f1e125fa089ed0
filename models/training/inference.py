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
import time
from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf

PERCENTILES = (50, 90, 95, 99)


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
    latency_ms = step_seconds * 1e3
    return InferenceResult(
        steps=int(step_seconds.size),
        batch_size=batch_size,
        throughput=float(batch_size * step_seconds.size / step_seconds.sum()),
        mean_latency_ms=float(latency_ms.mean()),
        latency_ms={q: float(np.percentile(latency_ms, q)) for q in PERCENTILES},
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
    times = np.zeros([steps], np.float64)
    step = 0
    while step < steps:
        before = step
        for features, _ in batches():
            if features["categorical"].shape[0] != batch_size:
                continue  # a short last batch would understate latency per batch
            start = time.perf_counter()
            predict(features).numpy()  # .numpy() waits for the device
            times[step] = time.perf_counter() - start
            step += 1
            if step == steps:
                break
        if step == before:
            raise ValueError(f"the inference split has no full batch of {batch_size} rows")
    return summarize(times[warmup_steps:], batch_size)
