"""Progress of a pass over batches (an evaluation, the inference benchmark), as training shows it.

Every `every` batches (``--print_freq``, the training loop's cadence) rank 0
logs one line through the results log: batches done and total, samples/s
and the time left, e.g. (for ``name="eval"``, one line shown wrapped)::

    step 30 | eval_batches_done: 100 | eval_batches_total: 1350 |
        eval_samples_per_second: 1502.3 | eval_eta_s: 501

The rate and the time left are those of the batches since the previous line,
as the training loop's samples/s are: the first interval includes tracing,
later ones follow the current speed. When the console is a terminal, a
one-line bar is also redrawn in place (`ResultsLogger.status`) at most every
`redraw_seconds`. Other ranks' results logs are silent, so a reporter there
does nothing.

Counting a batch is host arithmetic and a clock read: it never waits for the
device, so it adds no synchronisation to an evaluation or a benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from models.training.timing import TrainingClock

_BAR_WIDTH = 24


class ProgressLog(Protocol):
    """What progress needs of `models.training.results_log.ResultsLogger`."""

    enabled: bool

    @property
    def interactive(self) -> bool: ...

    def log(
        self,
        step: int | tuple[int, ...],
        data: dict[str, float],
        console: bool = True,
        tensorboard: bool = True,
    ) -> None: ...

    def status(self, text: str) -> None: ...

    def clear_status(self) -> None: ...


def format_duration(seconds: float) -> str:
    """``seconds`` as ``42s``, ``8m20s`` or ``2h05m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Reports batches done / total, samples/s and time left of one pass.

    Call `start` before the first batch, `advance` after each batch and
    `finish` at the end (also usable as ``with progress: ...``).

    Args:
        log: the run's results log (lines on its rank-0 console and JSON file).
        name: prefix of the logged metrics, e.g. ``"eval"``.
        step: the training step the lines are logged at.
        total: batches of the pass.
        every: batches between lines (``--print_freq``).
        samples_per_batch: global batch rows, when `advance` is not told.
        clock: monotonic clock in seconds.
        redraw_seconds: least time between two redraws of the terminal bar.
    """

    def __init__(
        self,
        log: ProgressLog,
        name: str,
        step: int,
        total: int,
        every: int,
        samples_per_batch: int,
        clock: Callable[[], float] = time.perf_counter,
        redraw_seconds: float = 0.5,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0 batches, got {total}")
        if every < 1:
            raise ValueError(f"every must be >= 1 batch (--print_freq), got {every}")
        if samples_per_batch < 1:
            raise ValueError(f"samples_per_batch must be >= 1, got {samples_per_batch}")
        self._log, self._name, self._step = log, name, step
        self._total, self._every = total, every
        self._samples_per_batch = samples_per_batch
        self._time, self._redraw_seconds = clock, redraw_seconds
        self._enabled = log.enabled
        self._bar = log.interactive
        self._clock = TrainingClock(clock)
        self._done = 0
        self._line_at = (0, 0, 0.0)  # clock (batches, samples, seconds) at the last line
        self._drawn_at = 0.0

    @property
    def done(self) -> int:
        """Batches counted so far."""
        return self._done

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()

    def start(self) -> None:
        """Starts the clock of the pass."""
        self._done = 0
        self._line_at = (0, 0, 0.0)
        self._clock = TrainingClock(self._time)
        self._clock.resume()
        self._drawn_at = self._time()

    def advance(self, samples: int | None = None) -> None:
        """Counts one batch of ``samples`` global rows (default: `samples_per_batch`)."""
        self._done += 1
        if not self._enabled:
            return
        self._clock.count(self._samples_per_batch if samples is None else samples)
        if self._done % self._every == 0:
            self._line()
        elif self._bar and self._time() - self._drawn_at >= self._redraw_seconds:
            self._draw()

    def finish(self) -> None:
        """Ends the pass: removes the terminal bar (its last line stays in the log)."""
        if self._enabled:
            self._log.clear_status()

    def _totals(self) -> tuple[int, int, float]:
        """Batches, samples and seconds so far (the clock keeps running)."""
        # TrainingClock adds a stretch to its totals when paused; resuming at once
        # keeps it running (the two clock reads apart are the only time not counted).
        self._clock.pause()
        self._clock.resume()
        return self._clock.steps, self._clock.samples, self._clock.seconds

    def _rates(self) -> tuple[float | None, float | None]:
        """Samples/s and seconds left, from the batches since the last line (None: no time yet)."""
        batches, samples, seconds = self._totals()
        since = (batches - self._line_at[0], samples - self._line_at[1], seconds - self._line_at[2])
        if since[0] == 0:  # right after a line: the whole pass so far
            since = (batches, samples, seconds)
        if since[2] <= 0 or since[0] == 0:
            return None, None
        left = max(self._total - self._done, 0)
        return since[1] / since[2], left * since[2] / since[0]

    def _line(self) -> None:
        samples_per_second, eta = self._rates()
        data: dict[str, float] = {
            f"{self._name}_batches_done": self._done,
            f"{self._name}_batches_total": self._total,
        }
        if samples_per_second is not None:
            data[f"{self._name}_samples_per_second"] = samples_per_second
            data[f"{self._name}_eta_s"] = eta
        self._log.log(self._step, data, tensorboard=False)
        self._line_at = (self._clock.steps, self._clock.samples, self._clock.seconds)
        if self._bar:
            self._draw()

    def _draw(self) -> None:
        samples_per_second, eta = self._rates()
        filled = _BAR_WIDTH * min(self._done, self._total) // max(self._total, 1)
        text = (
            f"{self._name} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] "
            f"{self._done}/{self._total} batches"
        )
        if samples_per_second is not None:
            text += f" | {samples_per_second:.1f} samples/s | ETA {format_duration(eta)}"
        self._log.status(text)
        self._drawn_at = self._time()


class NoProgress:
    """The progress of a pass that reports none."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def start(self) -> None:
        pass

    def advance(self, samples: int | None = None) -> None:
        pass

    def finish(self) -> None:
        pass
