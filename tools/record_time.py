"""Per-step timing (``--use_performance``) and a summary of a results log.

Library: :class:`StepTimer` records host-side wall time between step
boundaries and summarises it (mean, p50/p90/p95/p99 step time, samples/s),
excluding the first ``warmup_steps`` steps (graph tracing, first touches of
the tables, input pipeline fill).

Command line::

    python -m tools.record_time dlrm_tf_log.json     # a results log
    python -m tools.record_time step_times.json      # a summary StepTimer wrote

The host-side times are accurate when each step's result is consumed (or the
device is synchronous, as the CPU is); with an asynchronous device the
per-step values smear but their sum, hence the throughput, stays right.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.training.results_log import format_value, read_results_log

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


# ---------------------------------------------------------------- command line


def _metric_rows(values: dict[str, list[float]]) -> list[str]:
    rows = []
    width = max(len(k) for k in values)
    for key, series in values.items():
        array = np.asarray(series, dtype=np.float64)
        fields = [
            f"n={array.size}",
            f"mean={format_value(float(array.mean()))}",
            f"min={format_value(float(array.min()))}",
            f"max={format_value(float(array.max()))}",
            f"last={format_value(float(array[-1]))}",
        ]
        if key.endswith("_ms"):
            for q, v in zip(PERCENTILES, np.percentile(array, PERCENTILES), strict=True):
                fields.append(f"p{q}={format_value(float(v))}")
        rows.append(f"  {key:<{width}}  " + " ".join(fields))
    return rows


def describe_results_log(path: str | os.PathLike, results_only: bool = False) -> str:
    """A text summary of a results log: parameters, metric statistics, results.

    With `results_only`, just the result block(s).
    """
    entries = read_results_log(path)
    declared = {e.data.get("metric"): e.data for e in entries if e.type == "METADATA"}
    lines = [f"results log {path}: {len(entries)} entries"]
    if results_only:
        entries = [e for e in entries if e.type == "RESULT"]
    for entry in entries:
        if entry.type == "LOG" and entry.step == "PARAMETER":
            lines.append("parameters:")
            lines += [f"  {k} = {v}" for k, v in entry.data.items()]
    metrics: dict[str, list[float]] = {}
    steps = []
    for entry in entries:
        if entry.type == "LOG" and entry.step != "PARAMETER":
            steps.append(entry.step)
            for key, value in entry.data.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    metrics.setdefault(key, []).append(float(value))
    if steps and metrics:
        lines.append(f"metrics over {len(steps)} log lines, steps {steps[0]} .. {steps[-1]}:")
        lines += _metric_rows(metrics)
    for entry in entries:
        if entry.type == "RESULT":
            lines.append("result:")
            for key, value in entry.data.items():
                meta = declared.get(key, {})
                text = format_value(value, meta.get("format"))
                lines.append(f"  {key} = {text}" + (f" {meta['unit']}" if meta.get("unit") else ""))
    if not steps and not any(e.type == "RESULT" for e in entries):
        lines.append("no metrics and no result logged")
    return "\n".join(lines)


def describe(path: str | os.PathLike, results_only: bool = False) -> str:
    """Summary of a results log, or of a timing summary written by StepTimer."""
    text = Path(path).read_text()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None  # a JSON-lines file is not one JSON document
    fields = {f.name for f in dataclasses.fields(TimingSummary)}
    if isinstance(obj, dict) and fields <= set(obj):
        width = max(len(k) for k in fields)
        rows = [f"  {k:<{width}}  {format_value(obj[k])}" for k in obj if k in fields]
        return "\n".join([f"step timing summary {path}:", *rows])
    return describe_results_log(path, results_only)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.record_time",
        description="Print a summary of a results log or of a step timing summary JSON.",
    )
    parser.add_argument(
        "files", type=Path, nargs="+", help="results logs (JSON lines) or timing summaries"
    )
    parser.add_argument(
        "--results_only", action="store_true", help="print only the result blocks of results logs"
    )
    args = parser.parse_args(argv)
    try:
        print("\n".join(describe(f, args.results_only) for f in args.files))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
