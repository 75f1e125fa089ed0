"""The three modes of a run (train, eval, inference) over an assembled `Job`."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf

from models.config import Config, RunConfig
from models.device import DeviceSetup
from models.distributed.comm import Communicator
from models.distributed.hybrid import HybridParallel
from models.distributed.watchdog import StepWatchdog
from models.export import export_saved_model
from models.ranking import RankingModel
from models.run.data import RunData
from models.run.hooks import LoopHooks, ProgressFactory
from models.run.xla import xla_mode
from models.serving.raw_input import RawInputSpec
from models.training import checkpoint as ckpt
from models.training.early_stopping import BestSoFar
from models.training.evaluator import Evaluator
from models.training.inference import benchmark, replay_limit
from models.training.loop import LoopSettings
from models.training.lr_schedule import DLRMSchedule
from models.training.nonfinite import StepGuard
from models.training.profiler import ProfilerWindow
from models.training.progress import Progress
from models.training.results_log import ResultsLogger
from models.training.timing import StepTimer
from models.training.train_step import TrainStep
from models.training.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything the modes need, assembled by `dlrm_main.run`."""

    config: Config
    comm: Communicator
    device: DeviceSetup
    data: RunData
    parallel: HybridParallel
    state: ckpt.TrainingState
    schedule: DLRMSchedule
    logger: ResultsLogger


def progress_factory(job: Job) -> ProgressFactory:
    """Progress of evaluations and inference: a line every --print_freq batches on rank 0."""

    def progress(name: str, step: int, total: int) -> Progress:
        return Progress(
            job.logger,
            name,
            step,
            total,
            every=job.config.run.print_freq,
            samples_per_batch=job.config.data.valid_batch_size,
        )

    return progress


def run_mode(job: Job) -> dict[str, Any]:
    """Runs ``--mode`` on the job; returns the result block."""
    return {"train": train, "eval": evaluate, "inference": inference}[job.config.run.mode](job)


def train(job: Job) -> dict[str, Any]:
    """Trains (with evaluations and checkpoints); returns the result block."""
    config, comm, state, logger = job.config, job.comm, job.state, job.logger
    run, out, prof = config.run, config.output, config.profiler
    train_split = job.data.split("train")
    evaluator = None
    if not run.skip_eval:
        evaluator = Evaluator(job.parallel, is_chief=comm.rank == 0)
    step_fn = TrainStep(
        job.parallel,
        state.model.dense_variables,
        job.parallel.owned_embedding_variables,
        state.dense_optimizer,
        state.embedding_optimizer,
        jit_compile=xla_mode(config.device.enable_xla, comm.size, job.device) == "step",
        guard=StepGuard(run.on_nonfinite, job.device.loss_scale),
    )
    if state.loss_scale is not None:  # a float16 run resumed: continue with its scale
        step_fn.guard.load_scale_state(state.loss_scale)
    settings = LoopSettings(
        epochs=run.epochs,
        steps_per_epoch=len(train_split),
        max_steps=run.max_steps,
        evals_per_epoch=0 if run.skip_eval else run.evals_per_epoch,
        print_freq=run.print_freq,
        checkpoint_every_n_steps=out.checkpoint_every_n_steps,
        global_batch_size=config.data.batch_size,
        benchmark_warmup_steps=run.benchmark_warmup_steps,
        record_step_times=out.use_performance,
    )

    best = best_so_far(config, state)

    def save(step: int, epoch: int, batch: int, as_best: bool = False) -> None:
        if not out.save_checkpoint_path or (as_best and not out.keep_best_checkpoint):
            return
        state.step, state.epoch, state.batch = step, epoch, batch
        state.loss_scale = step_fn.guard.scale_state()
        kept_before = best.checkpoint
        if as_best:
            best.checkpoint = str(ckpt.best_checkpoint_dir(out.save_checkpoint_path))
        state.best = best.record()
        try:
            path = ckpt.save_checkpoint(out.save_checkpoint_path, state, comm, best=as_best)
        except OSError as error:
            best.checkpoint = kept_before
            where = f" ({error.filename})" if error.filename else ""
            what = "best checkpoint" if as_best else "checkpoint"
            message = (
                f"could not write the {what} of step {step} under "
                f"--save_checkpoint_path={out.save_checkpoint_path}: "
                f"{error.strerror or error}{where}"
            )
            # One process keeps its trained state and tries again at the next checkpoint;
            # ranks of a job would wait for each other in the save, and the last save has
            # no next one (a best checkpoint always has: the final one follows it).
            last = step >= settings.total_steps or best.should_stop
            if comm.size > 1 or (last and not as_best):
                raise ckpt.CheckpointError(message) from error
            logging.error("%s; training continues, the next checkpoint tries again", message)
            logger.log(step, {"checkpoint_failed": message})
            return
        logger.log(step, {"best_checkpoint" if as_best else "checkpoint": str(path)})

    trainer = Trainer(
        step_fn,
        settings,
        LoopHooks(
            logger,
            evaluator,
            None if run.skip_eval else job.data.split("test"),
            save,
            progress_factory(job),
        ),
        # Progress shows the rate of the update just applied (schedule of step - 1).
        learning_rate=lambda step: float(job.schedule(max(step - 1, 0))),
        profiler=ProfilerWindow(
            prof.enabled and comm.rank == prof.rank, prof.start_step, prof.num_steps, prof.log_dir
        ),
        reduce_loss=job.parallel.mean_across_ranks,
        watchdog=step_watchdog(run, comm),
        best=best,
    )
    result = trainer.fit(
        lambda epoch, start: train_split.as_dataset(epoch=epoch, start_batch=start),
        start_step=state.step,
        start_epoch=state.epoch,
        start_batch=state.batch,
    )
    if out.use_performance and result.step_times_s and comm.rank == 0:
        timer = StepTimer(config.data.batch_size)
        for seconds in result.step_times_s:
            timer.add(seconds)
        timer.write_summary(os.path.splitext(out.log_path)[0] + ".step_times.json")
    results: dict[str, Any] = {
        "throughput": result.samples_per_second,
        "mean_step_time_ms": result.mean_step_time_ms,
        "steps": result.steps,
        "measured_steps": result.measured_steps,
        "train_seconds": result.train_seconds,
        "loss": result.final_loss,
        "skipped_steps": result.skipped_steps,
    }
    if result.evals:
        results["auc"] = result.last_auc
        results["validation_loss"] = result.evals[-1][1].log_loss
    if best.auc is not None:  # also from before a resume
        results["best_auc"] = best.auc
        results["best_auc_step"] = best.step
    if best.checkpoint is not None:
        results["best_checkpoint"] = best.checkpoint
    if run.early_stopping_patience:
        results["stopped_early"] = result.stopped_early
    return results


def best_so_far(config: Config, state: ckpt.TrainingState) -> BestSoFar:
    """The best evaluation so far: fresh, or continued from the restored checkpoint.

    A resumed run also adopts the kept best checkpoint under
    ``--save_checkpoint_path`` when it scored higher than the restored record
    (it can be newer than the checkpoint resumed from), so a worse model never
    replaces it.
    """
    best = BestSoFar(patience=config.run.early_stopping_patience)
    out = config.output
    if not out.restore_checkpoint_path:
        return best
    best.resume(state.best)
    kept = out.save_checkpoint_path and ckpt.best_checkpoint_dir(out.save_checkpoint_path)
    if out.keep_best_checkpoint and kept and (kept / ckpt.METADATA_FILE).is_file():
        best.adopt_if_better(ckpt.read_metadata(kept).get("best"))
    return best


def step_watchdog(run: RunConfig, comm: Communicator) -> StepWatchdog | None:
    """This rank's watchdog (--step_timeout_s), or None when it is 0 (off)."""
    if run.step_timeout_s <= 0:
        return None
    return StepWatchdog(run.step_timeout_s, where=f"rank {comm.rank} of {comm.size}")


def evaluate(job: Job) -> dict[str, Any]:
    """Evaluates the (restored) model on the test split; returns the result block."""
    run, comm = job.config.run, job.comm
    evaluator = Evaluator(job.parallel, is_chief=comm.rank == 0, max_batches=run.max_steps)
    split = job.data.split("test")
    batches = split.as_dataset()
    progress = progress_factory(job)("eval", job.state.step, evaluator.batches_to_read(len(split)))
    watchdog = step_watchdog(run, comm)
    if watchdog is not None:
        watchdog.start(job.state.step)
        try:
            with watchdog.watching("evaluation"):
                evaluation = evaluator.evaluate(batches, on_batch=watchdog.alive, progress=progress)
        finally:
            watchdog.stop()
    else:
        evaluation = evaluator.evaluate(batches, progress=progress)
    if job.config.output.eval_scores_path and evaluation.logits is not None:
        write_scores(job.config.output.eval_scores_path, evaluation.logits)
    return {
        "auc": evaluation.auc,
        "validation_loss": evaluation.log_loss,
        "eval_samples": evaluation.samples,
        "throughput": evaluation.samples_per_second,
        "step": job.state.step,
    }


def write_scores(path: str, logits: np.ndarray) -> None:
    """Click probabilities of the evaluated rows (float32 .npy), as the SavedModel computes
    them from the logits (``tf.sigmoid``), so the two can be compared bit for bit."""
    probabilities = tf.sigmoid(tf.constant(logits, tf.float32)).numpy()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as out:
        np.save(out, probabilities)
    logging.info("wrote %d click probabilities to %s", probabilities.size, path)


def inference(job: Job) -> dict[str, Any]:
    """Times forward passes over the test split; returns throughput and latencies.

    The split is read once: replayed from device memory when it has fewer
    batches than --max_steps, streamed otherwise (`models.training.inference`).
    """
    parallel, run, data = job.parallel, job.config.run, job.data
    batch_size = job.config.data.valid_batch_size
    # float32 labels and numerical features, int32 ids: the global batch's bytes,
    # the same on every rank (each rank holds only a part of it).
    row_bytes = 4 * (1 + data.num_numerical + sum(data.hotness))
    result = benchmark(
        lambda features: parallel.forward(features["numerical"], features["categorical"]),
        data.split("test"),
        steps=run.max_steps,
        warmup_steps=run.benchmark_warmup_steps,
        batch_size=batch_size,
        max_replay_batches=replay_limit(batch_size * row_bytes),
        device=job.device.logical_device,
        progress=progress_factory(job)("inference", job.state.step, run.max_steps),
    )
    return result.as_dict()


def export(
    model: RankingModel,
    path: str,
    parallel: HybridParallel,
    raw_input_root: str | None = None,
    weights_from: str | None = None,
) -> None:
    """Writes the SavedModel (one process only: each rank holds only its own tables).

    Args:
        raw_input_root: the dataset whose vocabularies give the ``serve_raw`` signature.
        weights_from: a checkpoint whose weights are exported instead of the
            model's current ones (a training run's kept best checkpoint).
    """
    comm = parallel.comm
    if comm.size > 1:
        # Each rank holds only its own tables' trained values.
        logging.warning(
            "--export_saved_model_path is ignored with %d ranks: restore the checkpoint in one "
            "process (--mode=eval --restore_checkpoint_path ...) to export",
            comm.size,
        )
        return
    if weights_from is not None:
        state = ckpt.TrainingState(model, parallel.owned_tables, row_ranges=parallel.row_ranges)
        ckpt.restore_checkpoint(weights_from, state, comm)
    raw_input = None if raw_input_root is None else RawInputSpec.from_dataset(raw_input_root)
    export_saved_model(model, path, raw_input)
    signatures = "ids and raw-input signatures" if raw_input else "id-input signature"
    weights = f" (weights of {weights_from})" if weights_from else ""
    logging.info("exported SavedModel (%s) to %s%s", signatures, path, weights)
