"""The profiled window of training steps (--profile_start_step, --profile_steps)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import tensorflow as tf


class ProfilerWindow:
    """Starts/stops `tf.profiler` around steps [start, start + steps) on one rank."""

    def __init__(self, enabled: bool, start: int, steps: int, log_dir: str) -> None:
        self._enabled = enabled
        self._start, self._stop = start, start + steps
        self._log_dir = log_dir
        self._active = False

    def before_step(self, step: int) -> None:
        if self._enabled and step == self._start and not self._active:
            logging.info(
                "profiler: tracing steps %d-%d into %s", step, self._stop - 1, self._log_dir
            )
            tf.profiler.experimental.start(self._log_dir)
            self._active = True

    def after_step(self, step: int, sync: Callable[[], None]) -> None:
        if self._active and step + 1 >= self._stop:
            self.close(sync)

    def close(self, sync: Callable[[], None]) -> None:
        if self._active:
            sync()  # the trace must include the device work of the last step
            tf.profiler.experimental.stop()
            self._active = False
