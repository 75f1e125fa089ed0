"""What the training loop is told (settings, hooks, watchdog) and what it reports."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # the loop only passes results through; no import-time dependency
    from models.training.evaluator import EvalResult


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """How long to train and when to print, evaluate and checkpoint.

    Attributes:
        epochs: passes over the training split.
        steps_per_epoch: batches of the training split.
        max_steps: stop after this global step; -1 for no limit.
        evals_per_epoch: evaluation points per epoch; 0 for none.
        print_freq: steps between progress lines (and device syncs).
        checkpoint_every_n_steps: periodic checkpoints; 0 for none.
        global_batch_size: samples per step over all ranks.
        benchmark_warmup_steps: steps excluded from the throughput.
        record_step_times: sync after each step to time it (use_performance).
    """

    epochs: int
    steps_per_epoch: int
    max_steps: int = -1
    evals_per_epoch: int = 1
    print_freq: int = 1000
    checkpoint_every_n_steps: int = 0
    global_batch_size: int = 1
    benchmark_warmup_steps: int = 0
    record_step_times: bool = False

    @property
    def total_steps(self) -> int:
        total = self.epochs * self.steps_per_epoch
        return total if self.max_steps < 0 else min(total, self.max_steps)

    def eval_points(self) -> frozenset[int]:
        """Batch indices within an epoch after which to evaluate (evenly spaced, last included)."""
        if self.evals_per_epoch < 1 or self.steps_per_epoch < 1:
            return frozenset()
        evals = min(self.evals_per_epoch, self.steps_per_epoch)
        ends = np.linspace(0, self.steps_per_epoch, evals + 1)[1:]
        return frozenset(round(float(e)) - 1 for e in ends)


@dataclasses.dataclass
class TrainResult:
    """What a training run measured (figures exclude warm-up, evaluations, checkpoints)."""

    steps: int = 0
    measured_steps: int = 0
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    mean_step_time_ms: float = 0.0
    final_loss: float | None = None
    skipped_steps: int = 0  # non-finite steps not applied (models.training.nonfinite)
    stopped_early: bool = False  # the early-stopping patience ran out
    evals: list[tuple[int, EvalResult]] = dataclasses.field(default_factory=list)
    step_times_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def last_auc(self) -> float | None:
        return self.evals[-1][1].auc if self.evals else None

    @property
    def best_auc(self) -> float | None:
        aucs = [r.auc for _, r in self.evals if r.auc is not None]
        return max(aucs) if aucs else None


class Hooks(Protocol):
    """Side effects of the loop, provided by `dlrm_main.py`."""

    def progress(self, step: int, metrics: dict[str, float]) -> None: ...

    def evaluate(self, step: int, alive: Callable[[], None]) -> EvalResult:
        """Evaluates the model after ``step``; calls ``alive()`` after each batch."""
        ...

    def save_checkpoint(self, step: int, epoch: int, batch: int, best: bool = False) -> None:
        """Checkpoints the state after ``step``; ``best``: as the kept best checkpoint."""
        ...


class Watchdog(Protocol):
    """Progress watch of the loop (`models.distributed.watchdog.StepWatchdog`)."""

    def start(self, step: int) -> None: ...

    def beat(self, step: int) -> None: ...

    def suspended(self) -> contextlib.AbstractContextManager[None]: ...

    def watching(self, activity: str) -> contextlib.AbstractContextManager[None]: ...

    def alive(self) -> None: ...

    def stop(self) -> None: ...


class NoWatchdog:
    """The watchdog of a loop without one: every call does nothing."""

    def start(self, step: int) -> None:
        pass

    def beat(self, step: int) -> None:
        pass

    def suspended(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def watching(self, activity: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def alive(self) -> None:
        pass

    def stop(self) -> None:
        pass
