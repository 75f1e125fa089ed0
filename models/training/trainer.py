"""The training loop.

`Trainer.fit` runs the epochs. It never waits for the device except every
`print_freq` steps (progress line), at evaluations and checkpoints, at the
warm-up boundary and at the end; with `record_step_times` it waits after
every step so that each step's wall time is real (`--use_performance`).
An optional step watchdog (`models.distributed.watchdog.StepWatchdog`) hears
a beat after every step and after every evaluation batch (the `alive`
callback `Hooks.evaluate` receives); it is suspended during checkpoints.
The step itself is `models.training.train_step.TrainStep`; the loop's
settings, hooks and result are in `models.training.loop`.

With a `BestSoFar`, every evaluation is compared with the best so far: a new
best is checkpointed as the kept best one (`Hooks.save_checkpoint(...,
best=True)`), and the run stops after ``patience`` evaluations in a row
without improvement (early stopping; the final checkpoint is still written).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from models.training.early_stopping import BestSoFar
from models.training.loop import Hooks, LoopSettings, NoWatchdog, TrainResult, Watchdog
from models.training.nonfinite import StepGuard
from models.training.profiler import ProfilerWindow
from models.training.timing import StepTimer, TrainingClock
from models.training.train_step import Features

if TYPE_CHECKING:
    from models.training.evaluator import EvalResult


def _global_rows(features: Features, default: int) -> int:
    """Rows of the step's global batch (every rank reads the ids of all its rows).

    A short last batch counts with its real size; ``default`` (the full global
    batch) is used only when the size is not static.
    """
    rows = features["categorical"].shape[0] if "categorical" in features else None
    return default if rows is None else int(rows)


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
        guard: the step's record of non-finite steps, checked wherever the
            loop waits for the device (progress, evaluation, checkpoint, end),
            always before a checkpoint; default: ``step_fn.guard`` if any.
        best: the best evaluation so far and the early-stopping patience
            (updated in place; none when omitted: no best checkpoint, no
            early stop). Its decisions are collective (a checkpoint, the end
            of the loop): it must see the same AUC on every rank.
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
        guard: StepGuard | None = None,
        best: BestSoFar | None = None,
    ) -> None:
        self._step_fn = step_fn
        self._reduce_loss = reduce_loss or (lambda loss, rows: loss)
        self._settings = settings
        self._hooks = hooks
        self._learning_rate = learning_rate
        self._profiler = profiler or ProfilerWindow(False, 0, 0, "")
        self._watchdog = watchdog or NoWatchdog()
        self._guard = guard or getattr(step_fn, "guard", None)
        self._best = best

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
        if self._guard is not None:
            self._guard.start(start_step)
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
        clock = TrainingClock()
        step_timer = StepTimer(max(s.global_batch_size, 1))
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

        def check() -> None:
            """Raises NonFiniteError when the steps so far must stop the run."""
            if self._guard is not None:
                result.skipped_steps = self._guard.check(last_ckpt_step).skipped

        def paused(action: Callable[[], Any], watch: str = "step") -> Any:
            """Runs `action` with the device idle and the training clock stopped.

            The device wait stays under the watchdog (a hung step shows there).
            `watch` says how `action` is watched: "step" (a short action, as
            part of the step), "evaluation" (by its batches, see `Hooks`) or
            "none" (checkpoints: their length depends on the file system).
            Non-finite steps stop the run here, before `action`.
            """
            sync()
            check()
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
            if self._guard is not None and self._guard.scaled:
                metrics["loss_scale"] = self._guard.state().loss_scale
            if result.skipped_steps:
                metrics["skipped_steps"] = result.skipped_steps
            self._hooks.progress(step, metrics)
            printed_at = (clock.steps, clock.samples, clock.seconds)

        def evaluated(
            step: int, evaluation: EvalResult, position: tuple[int, int], training: bool = True
        ) -> bool:
            """Records an evaluation; keeps a new best checkpoint; True: stop early.

            ``training``: the loop is running (its clock is paused around the
            save); False after the loop, when the clock is already stopped.
            """
            result.evals.append((step, evaluation))
            if self._best is None:
                return False
            if self._best.observe(step, evaluation.auc):

                def save() -> None:
                    self._hooks.save_checkpoint(step, *position, best=True)

                if training:
                    paused(save, "none")
                else:
                    with self._watching("none"):
                        save()
            result.stopped_early = self._best.should_stop
            return result.stopped_early

        step = start_step
        for epoch in range(start_epoch, s.epochs):
            if 0 <= s.max_steps <= step or result.stopped_early:
                break
            first = start_batch if epoch == start_epoch else 0
            clock.resume()
            # A step's time runs from the previous step's end, so input waits count.
            step_timer.start()
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
                        step_timer.step_end()
                if measured:
                    clock.count(_global_rows(features, s.global_batch_size))
                self._profiler.after_step(step, sync)
                if step - start_step == s.benchmark_warmup_steps:
                    paused(lambda: None)  # warm-up (tracing, first batches) ends here
                if step % s.print_freq == 0:
                    paused(lambda step=step, epoch=epoch: progress(step, epoch))
                stop = 0 <= s.max_steps <= step
                position = (epoch, batch + 1) if batch + 1 < s.steps_per_epoch else (epoch + 1, 0)
                if batch in eval_points or (stop and eval_points):
                    evaluation = paused(self._evaluate_after(step), "evaluation")
                    stop = evaluated(step, evaluation, position) or stop
                    last_eval_step = step
                if s.checkpoint_every_n_steps and step % s.checkpoint_every_n_steps == 0:
                    paused(
                        lambda step=step, p=position: self._hooks.save_checkpoint(step, *p), "none"
                    )
                    last_ckpt_step = step
                if stop:
                    break
                step_timer.start()
            sync()
            clock.pause()
        self._profiler.close(sync)
        check()
        if loss is not None:
            result.final_loss = float(self._reduce_loss(loss, rows))
        if eval_points and step > last_eval_step:
            with self._watching("evaluation"):
                evaluation = self._evaluate_after(step)()
            evaluated(step, evaluation, position, training=False)
        if step > last_ckpt_step:
            with self._watching("none"):
                self._hooks.save_checkpoint(step, *position)
        result.steps = step
        result.step_times_s = step_timer.durations
        result.measured_steps = clock.steps
        result.train_seconds = clock.seconds
        if clock.steps and clock.seconds > 0:
            result.samples_per_second = clock.samples / clock.seconds
            result.mean_step_time_ms = clock.seconds / clock.steps * 1e3
        return result
