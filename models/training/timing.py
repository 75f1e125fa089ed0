"""Step timing, written once: per-step wall times, their summary, the training clock.

`StepTimer` records the wall time of each step from its boundaries and
`summarize` reduces such times to mean, p50/p90/p95/p99, min/max and
samples/s, excluding the first ``warmup_steps`` steps (graph tracing, first
touches of the tables, input pipeline fill). The training loop
(``--use_performance``), the inference benchmark and `tools/bench/train` time
their steps with them; `TrainingClock` is the loop's running total that
leaves out evaluations, checkpoints and warm-up.

The host-side times are accurate when each step's result is consumed (or the
device is synchronous, as the CPU is); with an asynchronous device the
per-step values smear but their sum, hence the throughput, stays right.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclasses.dataclass(frozen=True)
class TimingSummary:
    """Step-time statistics over the measured (post-warmup) steps.

    Times are in milliseconds; ``samples_per_second`` is the measured samples
    divided by the measured time (not the mean of per-step rates).
    """

    steps_recorded: int
    warmup_steps: int
    steps_measured: int
    samples_measured: int
    total_seconds: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    samples_per_second: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize(
    durations_s: Sequence[float], samples: Sequence[int] | int, warmup_steps: int = 0
) -> TimingSummary:
    """Summarises per-step durations.

    Args:
        durations_s: wall time of each step, seconds, in step order.
        samples: samples of each step, or one count for all steps.
        warmup_steps: leading steps left out of every statistic.

    Raises:
        ValueError: no step is left after the warmup, or invalid values.
    """
    durations = np.asarray(durations_s, dtype=np.float64)
    if durations.ndim != 1:
        raise ValueError(f"durations must be one value per step, got shape {durations.shape}")
    counts = (
        np.full(durations.shape, samples, dtype=np.int64)
        if isinstance(samples, int | np.integer)
        else np.asarray(samples, dtype=np.int64)
    )
    if counts.shape != durations.shape:
        raise ValueError(f"{len(counts)} sample counts for {len(durations)} step durations")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    bad = np.flatnonzero(~np.isfinite(durations) | (durations < 0))
    if bad.size:
        raise ValueError(f"step {bad[0]} has an invalid duration {durations[bad[0]]!r} s")
    if (counts < 0).any():
        raise ValueError(f"sample counts must be >= 0, got {counts.min()}")
    measured, measured_counts = durations[warmup_steps:], counts[warmup_steps:]
    if measured.size == 0:
        raise ValueError(
            f"{durations.size} steps recorded and {warmup_steps} warmup steps excluded: "
            "no step left to summarise (run more steps or lower the warmup)"
        )
    ms = measured * 1e3
    p50, p90, p95, p99 = np.percentile(ms, PERCENTILES)
    total = float(measured.sum())
    return TimingSummary(
        steps_recorded=int(durations.size),
        warmup_steps=int(warmup_steps),
        steps_measured=int(measured.size),
        samples_measured=int(measured_counts.sum()),
        total_seconds=total,
        mean_ms=float(ms.mean()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        samples_per_second=float(measured_counts.sum() / total) if total > 0 else math.inf,
    )


class StepTimer:
    """Records the wall time of each step from its boundaries.

    Call :meth:`start` right before the first step and :meth:`step_end` after
    each step; a step's time runs from the previous boundary, so time spent
    between steps (input, logging) is counted, as a user waiting for the run
    sees it.

    Args:
        samples_per_step: global batch size, used when ``step_end`` is not
            given the step's own count (a short last batch).
        warmup_steps: leading steps excluded from the summary.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        samples_per_step: int,
        warmup_steps: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if samples_per_step <= 0:
            raise ValueError(f"samples_per_step must be positive, got {samples_per_step}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.samples_per_step = samples_per_step
        self.warmup_steps = warmup_steps
        self._clock = clock
        self._last: float | None = None
        self._durations: list[float] = []
        self._samples: list[int] = []

    @property
    def durations(self) -> list[float]:
        """Seconds of each recorded step, warmup included."""
        return list(self._durations)

    def start(self) -> None:
        """Marks the boundary before the next step (also after a pause, e.g. evaluation)."""
        self._last = self._clock()

    def step_end(self, samples: int | None = None) -> float:
        """Marks the end of a step; returns its duration in seconds."""
        if self._last is None:
            raise RuntimeError("StepTimer.step_end() called before start()")
        now = self._clock()
        seconds = now - self._last
        self._last = now
        self.add(seconds, samples)
        return seconds

    def add(self, seconds: float, samples: int | None = None) -> None:
        """Records a step measured elsewhere."""
        self._durations.append(float(seconds))
        self._samples.append(self.samples_per_step if samples is None else int(samples))

    def summary(self) -> TimingSummary:
        return summarize(self._durations, self._samples, self.warmup_steps)

    def write_summary(self, path: str | os.PathLike) -> TimingSummary:
        """Writes :meth:`summary` as JSON (atomically) and returns it."""
        summary = self.summary()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(summary.as_dict(), indent=1) + "\n")
        os.replace(partial, path)
        return summary


class TrainingClock:
    """Training time that excludes evaluations, checkpoints and warm-up steps.

    `resume` starts a stretch of training, `count` adds a step to it and
    `pause` (after a device sync) adds the stretch to the totals, unless no
    step was counted in it (warm-up only).

    Args:
        clock: monotonic clock in seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.seconds = 0.0
        self.steps = 0
        self.samples = 0
        self._start: float | None = None
        self._pending = (0, 0)

    def resume(self) -> None:
        """Starts a stretch of training steps."""
        self._start = self._clock()
        self._pending = (0, 0)

    def count(self, samples: int) -> None:
        """Counts one step of ``samples`` global-batch rows."""
        self._pending = (self._pending[0] + 1, self._pending[1] + samples)

    def pause(self) -> None:
        """Call after a device sync: adds the elapsed time of counted steps."""
        steps, samples = self._pending
        if self._start is not None and steps:
            self.seconds += self._clock() - self._start
            self.steps += steps
            self.samples += samples
        self._start, self._pending = None, (0, 0)
