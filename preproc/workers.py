"""The process pool shared by all steps of a run."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator


class Workers:
    """One process pool for the whole run (spawning one per step costs seconds)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.pool = None

    def map(self, fn: Callable, tasks: list) -> Iterator:
        """Results of ``fn`` over ``tasks`` in task order."""
        if self.processes <= 1 or len(tasks) <= 1:
            return map(fn, tasks)
        if self.pool is None:
            # spawn: forking a process that may hold TensorFlow or tqdm threads is unsafe.
            self.pool = multiprocessing.get_context("spawn").Pool(self.processes)
        return self.pool.imap(fn, tasks)

    def close(self, completed: bool) -> None:
        """Waits for the workers, or kills them when the run stopped early."""
        if self.pool is not None:
            if completed:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None
