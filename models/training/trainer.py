"""The training step and the training loop.

`TrainStep` is one compiled `tf.function` (optionally XLA): hybrid-parallel
forward pass, float32 binary cross-entropy on logits, static loss scaling when
the precision policy asks for it, dense-gradient allreduce, and the two
optimizer updates (Keras optimizer for the MLPs, sparse optimizer for the
tables this rank owns).

`Trainer.fit` runs the epochs. It never waits for the device except every
`print_freq` steps (progress line), at evaluations and checkpoints, at the
warm-up boundary and at the end; with `record_step_times` it waits after
every step so that each step's wall time is real (`--use_performance`).
An optional step watchdog (`models.distributed.watchdog.StepWatchdog`) hears
a beat after every step and after every evaluation batch (the `alive`
callback `Hooks.evaluate` receives); it is suspended during checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:  # the loop only passes results through; no import-time dependency
    from models.training.evaluator import EvalResult

Features = dict[str, tf.Tensor]


class Parallel(Protocol):
    """What the train step needs from `models.distributed.HybridParallel`."""

    def forward(self, numerical: tf.Tensor, categorical: tf.Tensor) -> tf.Tensor: ...

    def reduce_gradients(
        self, embedding_grads: Sequence[Any], dense_grads: Sequence[Any]
    ) -> tuple[list[Any], list[Any]]: ...


def bce_with_logits(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy of `[b, 1]` logits, in float32 whatever the policy."""
    labels = tf.cast(labels, tf.float32)
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def _unscale(gradient: Any, inverse_scale: tf.Tensor) -> Any:
    """Divides a dense or sparse (IndexedSlices) gradient by the loss scale."""
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(
            gradient.values * tf.cast(inverse_scale, gradient.values.dtype),
            gradient.indices,
            gradient.dense_shape,
        )
    return gradient * tf.cast(inverse_scale, gradient.dtype)


class TrainStep:
    """One optimisation step over a global batch, compiled once.

    Args:
        parallel: distributed wrapper of the model (forward, reduce_gradients).
        dense_variables: MLP variables, updated by `dense_optimizer` after the
            allreduce.
        embedding_variables: the table variables this rank owns, updated by
            `embedding_optimizer` with their (sparse) gradients, never reduced.
        dense_optimizer: a Keras optimizer.
        embedding_optimizer: the sparse optimizer (`apply_gradients(pairs)`).
        loss_scale: static loss scale (float16 policies) or None.
        jit_compile: compile the step with XLA.
    """

    def __init__(
        self,
        parallel: Parallel,
        dense_variables: Sequence[tf.Variable],
        embedding_variables: Sequence[tf.Variable],
        dense_optimizer: Any,
        embedding_optimizer: Any,
        loss_scale: float | None = None,
        jit_compile: bool = False,
    ) -> None:
        self._parallel = parallel
        self._dense_variables = list(dense_variables)
        self._embedding_variables = list(embedding_variables)
        self._dense_optimizer = dense_optimizer
        self._embedding_optimizer = embedding_optimizer
        self._loss_scale = loss_scale
        self._function = tf.function(self._step, jit_compile=jit_compile, reduce_retracing=True)

    def __call__(self, features: Features, labels: tf.Tensor) -> tf.Tensor:
        """Runs one step; returns this rank's mean loss (a device tensor, not synced)."""
        return self._function(features, labels)

    def _step(self, features: Features, labels: tf.Tensor) -> tf.Tensor:
        variables = self._dense_variables + self._embedding_variables
        with tf.GradientTape() as tape:
            logits = self._parallel.forward(features["numerical"], features["categorical"])
            loss = bce_with_logits(labels, logits)
            # Scaling keeps small float16 gradients of the dense part from flushing to 0.
            scaled = loss * self._loss_scale if self._loss_scale else loss
        gradients = tape.gradient(scaled, variables)
        if self._loss_scale:
            inverse = tf.constant(1.0 / self._loss_scale, tf.float32)
            gradients = [_unscale(g, inverse) for g in gradients]
        num_dense = len(self._dense_variables)
        embedding_gradients, dense_gradients = self._parallel.reduce_gradients(
            gradients[num_dense:], gradients[:num_dense]
        )
        self._dense_optimizer.apply_gradients(
            zip(dense_gradients, self._dense_variables, strict=True)
        )
        self._embedding_optimizer.apply_gradients(
            zip(embedding_gradients, self._embedding_variables, strict=True)
        )
        return loss


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

    def save_checkpoint(self, step: int, epoch: int, batch: int) -> None: ...


class Watchdog(Protocol):
    """Progress watch of the loop (`models.distributed.watchdog.StepWatchdog`)."""

    def start(self, step: int) -> None: ...

    def beat(self, step: int) -> None: ...

    def suspended(self) -> contextlib.AbstractContextManager[None]: ...

    def watching(self, activity: str) -> contextlib.AbstractContextManager[None]: ...

    def alive(self) -> None: ...

    def stop(self) -> None: ...


class _NoWatchdog:
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


def _global_rows(features: Features, default: int) -> int:
    """Rows of the step's global batch (every rank reads the ids of all its rows).

    A short last batch counts with its real size; ``default`` (the full global
    batch) is used only when the size is not static.
    """
    rows = features["categorical"].shape[0] if "categorical" in features else None
    return default if rows is None else int(rows)


class _Clock:
    """Training time that excludes evaluations, checkpoints and warm-up steps."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0
        self.samples = 0
        self._start: float | None = None
        self._pending = (0, 0)

    def resume(self) -> None:
        self._start = time.perf_counter()
        self._pending = (0, 0)

    def count(self, samples: int) -> None:
        """Counts one step of ``samples`` global-batch rows."""
        self._pending = (self._pending[0] + 1, self._pending[1] + samples)

    def pause(self) -> None:
        """Call after a device sync: adds the elapsed time of counted steps."""
        steps, samples = self._pending
        if self._start is not None and steps:
            self.seconds += time.perf_counter() - self._start
            self.steps += steps
            self.samples += samples
        self._start, self._pending = None, (0, 0)


class Trainer:
    """Runs `TrainStep` over epochs with progress, evaluations and checkpoints.

    Args:
        step_fn: `(features, labels) -> loss` of one step (a `TrainStep`).
        settings: loop lengths and schedules.
        hooks: progress lines, evaluations, checkpoints.
        learning_rate: `step -> rate` shown in progress lines.
        profiler: the profiled window of steps (none when omitted).
        reduce_loss: ``(loss, rows) -> mean`` over ranks for progress lines and
            the final loss, where ``loss`` is this rank's mean over the ``rows``
            rows of its slice of the step's batch; weighting by ``rows`` makes
            it the exact mean of the global batch when slices differ in size
            (``HybridParallel.mean_across_ranks``). It is a collective: every
            rank reaches the same progress steps, so every rank calls it
            equally often. Default: the rank's own loss (one process).
        watchdog: told of every completed step and evaluation batch;
            checkpoints run suspended from it (none when omitted).
    """

    def __init__(
        self,
        step_fn: Callable[[Features, tf.Tensor], tf.Tensor],
        settings: LoopSettings,
        hooks: Hooks,
        learning_rate: Callable[[int], float],
        profiler: ProfilerWindow | None = None,
        reduce_loss: Callable[[tf.Tensor, int], tf.Tensor] | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self._step_fn = step_fn
        self._reduce_loss = reduce_loss or (lambda loss, rows: loss)
        self._settings = settings
        self._hooks = hooks
        self._learning_rate = learning_rate
        self._profiler = profiler or ProfilerWindow(False, 0, 0, "")
        self._watchdog = watchdog or _NoWatchdog()

    def _watching(self, watch: str) -> contextlib.AbstractContextManager[None]:
        if watch == "step":
            return contextlib.nullcontext()
        if watch == "evaluation":
            return self._watchdog.watching("evaluation")
        return self._watchdog.suspended()

    def _evaluate_after(self, step: int) -> Callable[[], EvalResult]:
        return lambda: self._hooks.evaluate(step, self._watchdog.alive)

    def fit(
        self,
        train_batches: Callable[[int, int], Iterable],
        start_step: int = 0,
        start_epoch: int = 0,
        start_batch: int = 0,
    ) -> TrainResult:
        """Trains from a data position until the epochs or `max_steps` are done.

        Args:
            train_batches: `(epoch, start_batch) -> iterable of (features, labels)`.
            start_step: global steps already done (restored checkpoint).
            start_epoch: epoch to continue.
            start_batch: next batch of that epoch.
        """
        self._watchdog.start(start_step)
        try:
            return self._fit(train_batches, start_step, start_epoch, start_batch)
        finally:
            self._watchdog.stop()

    def _fit(
        self,
        train_batches: Callable[[int, int], Iterable],
        start_step: int,
        start_epoch: int,
        start_batch: int,
    ) -> TrainResult:
        s = self._settings
        result = TrainResult(steps=start_step)
        eval_points = s.eval_points()
        clock = _Clock()
        loss = None
        rows = 0  # this rank's rows in the batch of `loss`
        last_eval_step = last_ckpt_step = start_step
        # The next batch to read, for an exact resume; not derivable from the step
        # when the run was resumed from a checkpoint of another batch size.
        position = (start_epoch, start_batch)
        printed_at = (0, 0, 0.0)  # clock (steps, samples, seconds) at the last progress line

        def sync() -> None:
            if loss is not None:
                loss.numpy()

        def paused(action: Callable[[], Any], watch: str = "step") -> Any:
            """Runs `action` with the device idle and the training clock stopped.

            The device wait stays under the watchdog (a hung step shows there).
            `watch` says how `action` is watched: "step" (a short action, as
            part of the step), "evaluation" (by its batches, see `Hooks`) or
            "none" (checkpoints: their length depends on the file system).
            """
            sync()
            clock.pause()
            with self._watching(watch):
                value = action()
            clock.resume()
            return value

        def progress(step: int, epoch: int) -> None:
            nonlocal printed_at
            steps_done = clock.steps - printed_at[0]
            samples_done = clock.samples - printed_at[1]
            seconds = clock.seconds - printed_at[2]
            result.final_loss = float(self._reduce_loss(loss, rows))
            metrics = {
                "loss": result.final_loss,
                "learning_rate": float(self._learning_rate(step)),
                "epoch": epoch,
            }
            if steps_done and seconds > 0:  # none when only warm-up steps ran since
                metrics["samples_per_second"] = samples_done / seconds
            self._hooks.progress(step, metrics)
            printed_at = (clock.steps, clock.samples, clock.seconds)

        step = start_step
        for epoch in range(start_epoch, s.epochs):
            if 0 <= s.max_steps <= step:
                break
            first = start_batch if epoch == start_epoch else 0
            clock.resume()
            # A step's time runs from the previous step's end, so input waits count.
            boundary = time.perf_counter()
            for batch, (features, labels) in enumerate(train_batches(epoch, first), start=first):
                self._profiler.before_step(step + 1)
                loss = self._step_fn(features, labels)
                rows = int(labels.shape[0])
                step += 1
                self._watchdog.beat(step)
                measured = step - start_step > s.benchmark_warmup_steps
                if s.record_step_times:
                    sync()
                    if measured:
                        result.step_times_s.append(time.perf_counter() - boundary)
                if measured:
                    clock.count(_global_rows(features, s.global_batch_size))
                self._profiler.after_step(step, sync)
                if step - start_step == s.benchmark_warmup_steps:
                    paused(lambda: None)  # warm-up (tracing, first batches) ends here
                if step % s.print_freq == 0:
                    paused(lambda step=step, epoch=epoch: progress(step, epoch))
                stop = 0 <= s.max_steps <= step
                if batch in eval_points or (stop and eval_points):
                    evaluation = paused(self._evaluate_after(step), "evaluation")
                    result.evals.append((step, evaluation))
                    last_eval_step = step
                position = (epoch, batch + 1) if batch + 1 < s.steps_per_epoch else (epoch + 1, 0)
                if s.checkpoint_every_n_steps and step % s.checkpoint_every_n_steps == 0:
                    paused(
                        lambda step=step, p=position: self._hooks.save_checkpoint(step, *p), "none"
                    )
                    last_ckpt_step = step
                if stop:
                    break
                boundary = time.perf_counter()
            sync()
            clock.pause()
        self._profiler.close(sync)
        if loss is not None:
            result.final_loss = float(self._reduce_loss(loss, rows))
        if eval_points and step > last_eval_step:
            with self._watching("evaluation"):
                result.evals.append((step, self._evaluate_after(step)()))
        if step > last_ckpt_step:
            with self._watching("none"):
                self._hooks.save_checkpoint(step, *position)
        result.steps = step
        result.measured_steps = clock.steps
        result.train_seconds = clock.seconds
        if clock.steps and clock.seconds > 0:
            result.samples_per_second = clock.samples / clock.seconds
            result.mean_step_time_ms = clock.seconds / clock.steps * 1e3
        return result
