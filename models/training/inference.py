"""Inference benchmark: throughput and latency percentiles of the forward pass.

Each step runs the compiled forward pass on one global batch that is already
in memory and waits for its result (that wait is what a serving client sees),
so the per-step wall time is the batch latency. The latency does not include
the input pipeline: a batch is read before its step's clock starts. The first
`warmup_steps` (tracing, caches, thread pools) are excluded. A short last
batch is skipped, so every figure is for batches of the configured size.

The split's input is built once:

- A split with fewer batches than the requested steps is read once before
  the timed steps, its full batches copied to the device, and those batches
  are replayed in order until the steps are done: the benchmark measures the
  model, not the reader, and on an accelerator the latency has no host to
  device copy. The replay keeps at most `max_replay_batches` batches (a memory
  bound; the caller derives it from the global batch, so that every rank
  keeps the same number of batches and the ranks' slices stay aligned).
- A larger split is streamed, one pass, as it is read: holding as many
  batches as steps would take steps x batch bytes of device memory (1000
  Criteo batches of 65,536 rows are about 10 GiB). The reader prefetches ahead
  on its own threads, and a batch is in host memory before its step starts;
  on an accelerator its host to device copy is part of the forward call, hence
  of the latency.

With several ranks every rank runs this with its own split (its row slice
and its tables' ids): the number of batches is the global one and replay
limits are the same on every rank, so all ranks run the same steps on the
same global batches, as the forward pass's collectives need.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np
import tensorflow as tf

from models.training.progress import NoProgress, Progress
from models.training.timing import PERCENTILES, StepTimer, TimingSummary
from models.training.timing import summarize as summarize_steps

# Device memory a replay may fill with input batches: enough for every batch of
# a small split, far below what the model and its activations need.
REPLAY_BUDGET_BYTES = 1 << 30

Features = dict[str, tf.Tensor]
_NO_FULL_BATCH = "the inference split has no full batch of {} rows"


class Split(Protocol):
    """What the benchmark needs of a split (`BinaryDataset`, `SyntheticDataset`)."""

    def __len__(self) -> int: ...

    def as_dataset(self) -> Iterable[tuple[Features, tf.Tensor]]: ...


@dataclasses.dataclass(frozen=True)
class InferenceResult:
    """Figures of the measured steps (warm-up excluded); latencies in milliseconds.

    ``replayed_batches`` is the number of batches replayed from device memory,
    0 when the split was streamed.
    """

    steps: int
    batch_size: int
    throughput: float  # samples per second
    mean_latency_ms: float
    latency_ms: dict[int, float]  # percentile -> milliseconds
    replayed_batches: int = 0

    def as_dict(self) -> dict[str, float | int | bool]:
        result: dict[str, float | int | bool] = {
            "inference_steps": self.steps,
            "batch_size": self.batch_size,
            "throughput": self.throughput,
            "mean_latency_ms": self.mean_latency_ms,
        }
        result.update({f"p{q}_latency_ms": v for q, v in self.latency_ms.items()})
        result["replayed_batches"] = self.replayed_batches
        # The latency is the forward pass on a batch already read (module docstring).
        result["latency_includes_input"] = False
        return result


def summarize(step_seconds: np.ndarray, batch_size: int) -> InferenceResult:
    """Throughput and latency statistics of measured per-step wall times (seconds)."""
    if step_seconds.size == 0:
        raise ValueError("no measured inference steps (all were warm-up)")
    return _result(summarize_steps(step_seconds, batch_size), batch_size)


def _result(timing: TimingSummary, batch_size: int, replayed: int = 0) -> InferenceResult:
    return InferenceResult(
        steps=timing.steps_measured,
        batch_size=batch_size,
        throughput=timing.samples_per_second,
        mean_latency_ms=timing.mean_ms,
        latency_ms={q: getattr(timing, f"p{q}_ms") for q in PERCENTILES},
        replayed_batches=replayed,
    )


def replay_limit(global_batch_bytes: int, budget_bytes: int = REPLAY_BUDGET_BYTES) -> int:
    """Batches a replay may keep: those of ``global_batch_bytes`` each that fit the budget.

    The global batch (every rank's rows and every table's ids) bounds any
    rank's share of it, and gives every rank the same limit.
    """
    if global_batch_bytes < 1:
        raise ValueError(f"global_batch_bytes must be >= 1, got {global_batch_bytes}")
    return max(1, budget_bytes // global_batch_bytes)


def _full(batches: Iterable, batch_size: int) -> Iterator[Features]:
    """The features of the batches with `batch_size` global rows (a short last one is skipped)."""
    for features, _ in batches:
        if features["categorical"].shape[0] == batch_size:
            yield features


def _to_device(features: Features, device: str | None) -> Features:
    # tf.identity under the device scope copies a host tensor into device memory.
    with tf.device(device):
        return {name: tf.identity(value) for name, value in features.items()}


def benchmark(
    forward: Callable[[Features], tf.Tensor],
    split: Split,
    steps: int,
    warmup_steps: int,
    batch_size: int,
    max_replay_batches: int | None = None,
    device: str | None = None,
    progress: Progress | NoProgress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> InferenceResult:
    """Times `steps` forward passes, the first `warmup_steps` excluded.

    Args:
        forward: features -> logits ``[b, 1]``; compiled here with tf.function.
        split: the batches (``as_dataset()`` is called once) and their number
            (``len``), which decides between replay and stream (module docstring).
        steps: total steps, warm-up included.
        warmup_steps: steps excluded from the figures.
        batch_size: global batch size (samples per step over all ranks); only
            full batches (``categorical`` of `batch_size` rows) are timed.
        max_replay_batches: most batches a replay keeps (None: no limit); must
            be the same on every rank (`replay_limit`).
        device: where replayed batches are kept (the run's logical device);
            None for TensorFlow's default placement.
        progress: counts each step (lines every ``--print_freq`` steps on rank 0).
        clock: monotonic clock in seconds of the step timer.

    Raises:
        ValueError: bad step counts, or the split has no full batch.
    """
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps must be in [0, steps={steps}), got {warmup_steps}")
    if max_replay_batches is not None and max_replay_batches < 1:
        raise ValueError(f"max_replay_batches must be >= 1, got {max_replay_batches}")
    num_batches = len(split)
    replayed = 0
    if num_batches > steps:
        # At most the last batch is short: the one pass has `steps` full batches.
        source: Iterable[Features] = _full(split.as_dataset(), batch_size)
    else:
        kept = [
            _to_device(features, device)
            for features in itertools.islice(
                _full(split.as_dataset(), batch_size), max_replay_batches
            )
        ]
        if not kept:
            raise ValueError(_NO_FULL_BATCH.format(batch_size))
        replayed = len(kept)
        logging.info(
            "inference: the test split has %d batches for %d steps: %d full batches read "
            "once and replayed from device memory",
            num_batches,
            steps,
            replayed,
        )
        source = itertools.cycle(kept)
    predict = tf.function(lambda features: tf.sigmoid(forward(features)), reduce_retracing=True)
    timer = StepTimer(batch_size, warmup_steps, clock=clock)
    progress = progress or NoProgress()
    with progress:
        for features in itertools.islice(source, steps):
            timer.start()  # the batch is in memory: the input is not timed
            predict(features).numpy()  # .numpy() waits for the device
            timer.step_end()
            progress.advance()
    if not timer.durations:
        raise ValueError(_NO_FULL_BATCH.format(batch_size))
    if len(timer.durations) < steps:
        raise ValueError(
            f"the inference split of {num_batches} batches gave {len(timer.durations)} full "
            f"batches of {batch_size} rows for {steps} steps"
        )
    return _result(timer.summary(), batch_size, replayed)
