"""A host-side step watchdog: ends a process whose training stopped making progress.

Gloo bounds a dead or frozen peer (see ``comm.py``), but not a rank that stays
alive and never issues its next collective (stuck in its input pipeline, a
deadlock, a wedged file system): every other rank then waits in that
collective forever. The training loop calls :meth:`StepWatchdog.beat` after
each step; a daemon thread aborts the process when no beat came for
``timeout_s`` seconds. Under ``horovodrun`` a rank exiting with an error makes
``horovodrun`` stop the others (measured: within a second), so the job ends
within about ``timeout_s`` of the last completed step, on every rank, whichever
rank is stuck. The abort is ``os._exit``: the main thread is blocked inside a
TensorFlow op and would never see a Python exception.

What counts: the first step (tracing, compilation) is timed like the others,
and on asynchronous devices a step completes when its call returns to the
host, which may run up to ``--print_freq`` steps ahead of the device; choose
the timeout above both. An evaluation is watched batch by batch
(:meth:`StepWatchdog.watching` and :meth:`StepWatchdog.alive`): its length
depends on the evaluation set, but each of its batches takes about a forward
pass and gathers predictions across ranks, so a rank stuck there stalls the
job just as in training. Checkpoints are not timed (their length depends on
the file system): the loop suspends the watchdog around them. After either,
the next step has a full timeout.

Pure Python (``threading``), no TensorFlow or Horovod.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

# Like coreutils' timeout(1): the job's exit status says why it ended.
WATCHDOG_EXIT_CODE = 124


def abort_process(message: str) -> None:
    """Logs ``message`` and every thread's Python stack, then ends the process at once."""
    logging.critical("%s", message)
    print(message, file=sys.stderr, flush=True)
    # Where the main thread is stuck (input pipeline, step, collective) is the
    # first thing the user needs.
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(WATCHDOG_EXIT_CODE)


class StepWatchdog:
    """Calls ``on_timeout`` when no training step completed for ``timeout_s`` seconds.

    Args:
        timeout_s: seconds allowed between the start (or the last beat, or the
            end of a suspension) and the next beat; > 0.
        where: who is watched, for the message (e.g. ``"rank 1 of 8"``).
        on_timeout: called once, from the watchdog thread, with the message;
            default :func:`abort_process`.

    Use::

        watchdog.start(step)
        for ...:
            run_step()
            watchdog.beat(step)
            with watchdog.watching("evaluation"):
                for batch in evaluation_batches:
                    predict(batch)
                    watchdog.alive()
            with watchdog.suspended():
                save_checkpoint()
        watchdog.stop()
    """

    def __init__(
        self,
        timeout_s: float,
        where: str = "this process",
        on_timeout: Callable[[str], None] = abort_process,
    ) -> None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise ValueError(f"timeout_s must be a number of seconds, got {timeout_s!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self._where = where
        self._on_timeout = on_timeout
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._step = 0
        self._armed_at = 0.0
        self._deadline: float | None = None  # None while suspended
        self._activity: str | None = None  # what runs between steps, if watched
        self._progress = 0  # batches of the watched activity done

    def start(self, step: int) -> None:
        """Arms the watchdog; ``step`` is the last completed step (0, or a restored one)."""
        if self._thread is not None:
            raise RuntimeError("StepWatchdog.start() called twice")
        self._arm(step)
        self._thread = threading.Thread(target=self._watch, name="step-watchdog", daemon=True)
        self._thread.start()

    def beat(self, step: int) -> None:
        """Records that ``step`` completed; the next one has ``timeout_s`` seconds."""
        self._arm(step)

    @contextlib.contextmanager
    def watching(self, activity: str) -> Iterator[None]:
        """Times ``activity`` (e.g. "evaluation") by its own progress.

        Inside, each :meth:`alive` call gives the activity another ``timeout_s``
        seconds; the first call must come within ``timeout_s`` of entering.
        The next training step has a full timeout after the block.
        """
        with self._lock:
            self._activity, self._progress = activity, 0
        self._arm(self._step)
        try:
            yield
        finally:
            with self._lock:
                self._activity = None
            self._arm(self._step)

    def alive(self) -> None:
        """Records progress of the watched activity (one batch done)."""
        with self._lock:
            self._progress += 1
        self._arm(self._step)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Not timed inside (checkpoints); re-armed with a full timeout after."""
        with self._lock:
            self._deadline = None
        try:
            yield
        finally:
            self._arm(self._step)

    def stop(self) -> None:
        """Ends the watchdog thread; no timeout fires afterwards."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _arm(self, step: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._step = step
            self._armed_at = now
            self._deadline = now + self.timeout_s

    def _watch(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                deadline, step, armed_at = self._deadline, self._step, self._armed_at
                activity, progress = self._activity, self._progress
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self._on_timeout(self._message(step, now - armed_at, activity, progress))
                return
            # Sleeps until the deadline seen now; a beat meanwhile moves it
            # later, which the next round notices.
            wait = self.timeout_s if deadline is None else deadline - now
            self._stopped.wait(wait)

    def _message(self, step: int, waited_s: float, activity: str | None, progress: int) -> str:
        ending = (
            "A rank that never reaches its next collective stalls every rank; ending this "
            f"process (exit status {WATCHDOG_EXIT_CODE}) so that the job stops instead of hanging"
        )
        if activity is not None:
            return (
                f"step watchdog: {self._where}: the {activity} after step {step} made no "
                f"progress within {self.timeout_s:g} s (--step_timeout_s); {progress} of its "
                f"batches completed, batch {progress + 1} has been running for "
                f"{waited_s:.1f} s. {ending}"
            )
        return (
            f"step watchdog: {self._where}: no training step completed within "
            f"{self.timeout_s:g} s (--step_timeout_s); the last completed step is {step}, "
            f"step {step + 1} has been running for {waited_s:.1f} s. {ending}"
        )
