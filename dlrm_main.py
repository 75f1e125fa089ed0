"""DLRM training, evaluation and inference benchmark on Criteo-format data.

    python dlrm_main.py --dataset_path DIR [--mode train|eval|inference] [flags]
    horovodrun -np 8 python dlrm_main.py --use_horovod --dataset_path DIR ...

The run follows the data flow: flags -> config -> communicator and device ->
data -> model (placed on ranks) -> loop -> results. `main(argv)` returns the
result block as a dict, so tests call it directly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf
from absl import app
from absl import flags as absl_flags

from models import flags as dlrm_flags
from models.config import (
    Config,
    ConfigError,
    RunConfig,
    config_from_flags,
    config_path_for,
    write_config,
)
from models.data.binary import BinaryDataset
from models.data.metadata import DatasetError, load_metadata
from models.data.synthetic import SyntheticDataset
from models.device import DeviceSetup, setup_device, xla_available
from models.distributed.comm import Communicator, make_communicator
from models.distributed.hybrid import HybridParallel
from models.distributed.peers import lost_peer_message
from models.distributed.placement import (
    EMBEDDING_MEMORY_FRACTION,
    Placement,
    embedding_budget_bytes,
    embedding_table_bytes,
    plan_placement,
)
from models.distributed.watchdog import StepWatchdog
from models.dlrm import DLRM
from models.export import export_saved_model
from models.training import checkpoint as ckpt
from models.training.evaluator import Evaluator
from models.training.inference import benchmark
from models.training.lr_schedule import DLRMSchedule
from models.training.optimizers import SparseOptimizer, make_optimizers
from models.training.results_log import ResultsLogger
from models.training.trainer import LoopSettings, ProfilerWindow, Trainer, TrainStep
from tools.record_time import StepTimer

# `--help` lists the flags of models/flags.py as this program's own.
absl_flags.adopt_module_key_flags(dlrm_flags)


def main(argv: list[str]) -> dict[str, Any]:
    """Parses `argv` (program name first), validates it and runs; returns the results."""
    config = config_from_flags(dlrm_flags.parse(argv))
    return run(config)


def run(config: Config) -> dict[str, Any]:
    """Runs one configured job; returns the result block (rank 0's figures)."""
    _check_launcher(config.device.use_horovod, os.environ)
    comm = make_communicator(config.device.use_horovod)
    _check_world(config, comm.size)
    # Before any TensorFlow op: pins this rank's device and sets the precision policy.
    device = setup_device(config.device, config.optimizer.loss_scale, comm.local_rank)
    logger = _open_results_log(config, comm.rank)

    data = _Data(config, comm.rank, comm.size)
    opt = config.optimizer
    schedule = DLRMSchedule(
        opt.learning_rate, opt.warmup_steps, opt.decay_start_step, opt.decay_steps
    )
    dense_optimizer, embedding_optimizer = make_optimizers(
        opt.name, schedule, jit_embedding_update=xla_available(device.kind)
    )
    # Before the model exists: tables that cannot fit fail here, not at allocation.
    placement = _plan_tables(config, data.cardinalities, comm.size, embedding_optimizer)
    model, parallel = _build_model(config, data.cardinalities, comm, placement)
    data.place(parallel.owned_tables)
    _log_parameters(logger, config, device, data, parallel, embedding_optimizer)

    state = _restore_or_sync(
        config, model, parallel, (dense_optimizer, embedding_optimizer), comm, logger
    )
    job = _Job(config, comm, device, data, parallel, state, schedule, logger)
    results = {"train": _train, "eval": _evaluate, "inference": _inference}[config.run.mode](job)

    if config.output.export_saved_model_path:
        _export(model, config.output.export_saved_model_path, comm)
    logger.result(results)
    logger.close()
    return results


def _check_launcher(use_horovod: bool, environ: Mapping[str, str]) -> None:
    """Refuses N independent single-process runs started by horovodrun/mpirun.

    Without --use_horovod every process would train alone on the whole data
    and write the same log and checkpoint files.
    """
    for variable in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE"):
        size = environ.get(variable, "1")
        if not use_horovod and size.isdigit() and int(size) > 1:
            raise ConfigError(
                f"launched as {size} processes ({variable}={size}) but --use_horovod is not "
                "set; add --use_horovod (or start one process)"
            )


def _check_world(config: Config, world: int) -> None:
    """Cross-checks the flags that only the launched world size can validate."""
    profiler = config.profiler
    if profiler.enabled and not 0 <= profiler.rank < world:
        raise ConfigError(
            f"--profiled_rank={profiler.rank} does not exist in a job of {world} rank(s); "
            f"use 0..{world - 1}"
        )


def _open_results_log(config: Config, rank: int) -> ResultsLogger:
    out = config.output
    if rank == 0:
        write_config(config, config_path_for(out.log_path))
    return ResultsLogger(
        out.log_path,
        rank=rank,
        tensorboard_dir=out.tensorboard_log_dir,
        # A resumed training run continues its log.
        append=bool(out.restore_checkpoint_path) and config.run.mode == "train",
    )


def _plan_tables(
    config: Config,
    cardinalities: tuple[int, ...],
    world: int,
    embedding_optimizer: SparseOptimizer,
) -> Placement:
    """Places the tables on ranks; within a per-rank budget when a memory limit is set.

    The budget (``embedding_budget_bytes``) counts the optimizer's slots in
    training; eval and inference hold the weights only.
    """
    table_bytes = embedding_table_bytes(cardinalities, config.model.embedding_dim)
    limit_gb = config.device.memory_limit_gb
    if limit_gb is None:
        return plan_placement(table_bytes, world)
    training = config.run.mode == "train"
    slots = len(embedding_optimizer.slot_initial_values) if training else 0
    budget = embedding_budget_bytes(limit_gb, slots)
    derivation = (
        f"--tf_mlu_memory_limit_gb={limit_gb} leaves each rank {budget} bytes of table "
        f"weights ({EMBEDDING_MEMORY_FRACTION:.0%} of the memory for the tables and their "
        f"{slots} optimizer slot(s) each)"
    )
    try:
        placement = plan_placement(table_bytes, world, budget, table_rows=list(cardinalities))
    except ValueError as error:
        raise ConfigError(
            f"the embedding tables do not fit: {error}\n{derivation}; raise the limit, use "
            "more ranks or lower --embedding_dim"
        ) from error
    if placement.split_tables:
        oversized = "; ".join(
            f"table {t}: {table_bytes[t]} bytes ({cardinalities[t]} rows x "
            f"{config.model.embedding_dim} float32)"
            for t in placement.split_tables
        )
        raise ConfigError(
            f"{oversized}: larger than the per-rank budget of {budget} bytes, and the model "
            f"cannot hold a table split by rows yet\n{derivation}; raise the limit or lower "
            "--embedding_dim (or preprocess with a higher frequency threshold)"
        )
    return placement


def _build_model(
    config: Config, cardinalities: tuple[int, ...], comm: Communicator, placement: Placement
) -> tuple[DLRM, HybridParallel]:
    # Same seed on every rank: identical dense initial weights (also broadcast later).
    keras.utils.set_random_seed(config.run.seed)
    m = config.model
    # Each rank allocates only the tables it owns; per-table seeds give every table
    # the same initial rows whatever the world size.
    model = DLRM(
        cardinalities,
        embedding_dim=m.embedding_dim,
        bottom_mlp_dims=m.bottom_mlp_dims,
        top_mlp_dims=m.top_mlp_dims,
        num_numerical_features=m.num_numerical_features,
        table_ids=placement.tables_per_rank[comm.rank],
        seed=config.run.seed,
    )
    return model, HybridParallel(model, comm, placement, config.data.batch_size)


def _log_parameters(
    logger, config: Config, device: DeviceSetup, data, parallel, embedding_optimizer
) -> None:
    placement = parallel.placement
    logger.parameters(
        {
            **_flat(config.to_dict()),
            "world_size": parallel.comm.size,
            "device_kind": device.kind,
            "precision_policy": device.policy_name,
            "loss_scale_applied": device.loss_scale,
            "embedding_update_xla": bool(getattr(embedding_optimizer, "jit_compile", False)),
            "cardinalities": list(data.cardinalities),
            "placement": placement.to_dict(),
            "alltoall_bytes_per_step": parallel.alltoall_bytes_per_step(),
        }
    )
    if parallel.comm.rank == 0:
        logging.info("placement:\n%s", parallel.describe())


def _restore_or_sync(config, model, parallel, optimizers, comm, logger) -> ckpt.TrainingState:
    """The checkpointed state; restored, or dense weights broadcast."""
    dense_optimizer, embedding_optimizer = optimizers
    training = config.run.mode == "train"
    # Eval and inference restore weights only (no optimizer state needed).
    state = ckpt.TrainingState(
        model,
        parallel.owned_tables,
        embedding_optimizer if training else None,
        dense_optimizer if training else None,
        global_batch_size=config.data.batch_size if training else None,
    )
    if config.output.restore_checkpoint_path:
        info = ckpt.restore_checkpoint(config.output.restore_checkpoint_path, state, comm)
        logger.log(state.step, {"restored_checkpoint": str(info.path)})
    else:
        parallel.broadcast_dense_variables()
    return state


@dataclasses.dataclass(frozen=True)
class _Job:
    """Everything the modes need, assembled by `run`."""

    config: Config
    comm: Communicator
    device: DeviceSetup
    data: _Data
    parallel: HybridParallel
    state: ckpt.TrainingState
    schedule: DLRMSchedule
    logger: ResultsLogger


class _Data:
    """Training and evaluation splits for this rank (binary or synthetic)."""

    def __init__(self, config: Config, rank: int, world: int) -> None:
        self._config = config
        self._rank, self._world = rank, world
        self._table_ids: tuple[int, ...] = ()
        data = config.data
        if data.dataset_type == "raw":
            self.metadata = load_metadata(data.dataset_path, validate=False)
            self.cardinalities = tuple(self.metadata.cardinalities)
            if self.metadata.num_numerical_features != data.num_numerical_features:
                raise ConfigError(
                    f"--num_numerical_features={data.num_numerical_features} but the dataset at "
                    f"{data.dataset_path} has {self.metadata.num_numerical_features}"
                )
        else:
            self.metadata = None
            self.cardinalities = data.synthetic_cardinalities

    def place(self, table_ids: tuple[int, ...]) -> None:
        """Sets the tables whose ids this rank reads (known once tables are placed)."""
        self._table_ids = tuple(table_ids)

    def split(self, name: str) -> Any:
        """`name` is "train" or "test"; returns an object with `len()` and `as_dataset()`."""
        c, data = self._config, self._config.data
        train = name == "train"
        batch_size = data.batch_size if train else data.valid_batch_size
        common = dict(
            global_batch_size=batch_size,
            table_ids=self._table_ids,
            rank=self._rank,
            world_size=self._world,
            prefetch_batches=max(1, data.prefetch_batches),
        )
        if data.dataset_type == "synthetic":
            return SyntheticDataset(
                num_batches=data.synthetic_train_batches if train else data.synthetic_valid_batches,
                cardinalities=self.cardinalities,
                num_numerical=data.num_numerical_features,
                # Different seeds: the evaluation set is not the training set.
                seed=c.run.seed if train else c.run.seed + 1,
                **common,
            )
        split = BinaryDataset(
            data.dataset_path,
            name,
            metadata=self.metadata,
            # XLA compiles one program per shape: a short last batch would recompile.
            drop_remainder=train and c.device.enable_xla,
            shuffle=train and c.run.epochs > 1,
            seed=c.run.seed,
            **common,
        )
        if len(split) == 0:
            hint = "" if train else " (train with --skip_eval to go without evaluation)"
            raise ConfigError(
                f"the {name!r} split of --dataset_path={data.dataset_path} has no rows{hint}"
            )
        if c.run.mode == "inference" and split.num_rows < batch_size:
            raise ConfigError(
                f"--mode=inference times full batches, but the {name!r} split of "
                f"--dataset_path={data.dataset_path} has {split.num_rows} rows, fewer than "
                f"--valid_batch_size={batch_size}"
            )
        return split


class _LoopHooks:
    """Progress lines, evaluations and checkpoints of `Trainer.fit`."""

    def __init__(self, logger, evaluator, eval_split, save) -> None:
        self._logger, self._evaluator = logger, evaluator
        self._eval_split, self._save = eval_split, save

    def progress(self, step: int, metrics: dict[str, float]) -> None:
        self._logger.log(step, metrics)

    def evaluate(self, step: int, alive: Callable[[], None]):
        result = self._evaluator.evaluate(self._eval_split.as_dataset(), on_batch=alive)
        if result.log_loss is not None:  # rank 0; its AUC is None for one-class labels
            metrics = {} if result.auc is None else {"auc": result.auc}
            self._logger.log(
                step,
                {
                    **metrics,
                    "validation_loss": result.log_loss,
                    "eval_samples": result.samples,
                    "eval_seconds": result.seconds,
                },
            )
        return result

    def save_checkpoint(self, step: int, epoch: int, batch: int) -> None:
        self._save(step, epoch, batch)


def _train(job: _Job) -> dict[str, Any]:
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
        loss_scale=job.device.loss_scale,
        jit_compile=_xla_mode(config.device.enable_xla, comm.size, job.device) == "step",
    )
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

    def save(step: int, epoch: int, batch: int) -> None:
        if out.save_checkpoint_path:
            state.step, state.epoch, state.batch = step, epoch, batch
            path = ckpt.save_checkpoint(out.save_checkpoint_path, state, comm)
            logger.log(step, {"checkpoint": str(path)})

    trainer = Trainer(
        step_fn,
        settings,
        _LoopHooks(logger, evaluator, None if run.skip_eval else job.data.split("test"), save),
        # Progress shows the rate of the update just applied (schedule of step - 1).
        learning_rate=lambda step: float(job.schedule(max(step - 1, 0))),
        profiler=ProfilerWindow(
            prof.enabled and comm.rank == prof.rank, prof.start_step, prof.num_steps, prof.log_dir
        ),
        reduce_loss=job.parallel.mean_across_ranks,
        watchdog=_step_watchdog(run, comm),
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
    }
    if result.evals:
        results["auc"] = result.last_auc
        results["best_auc"] = result.best_auc
        results["validation_loss"] = result.evals[-1][1].log_loss
    return results


def _xla_mode(enable_xla: bool, world: int, device: DeviceSetup) -> str:
    """ "step" (whole step compiled), "auto" (XLA auto-clustering) or "off".

    Horovod's collectives have no XLA kernels, so a multi-rank step cannot be
    compiled whole; TensorFlow's auto-clustering then compiles the clusters of
    compatible ops around them (on GPUs; on CPUs only with
    TF_XLA_FLAGS=--tf_xla_cpu_global_jit).
    """
    if not enable_xla:
        return "off"
    if device.kind == "cpu" and device.policy_name == "mixed_bfloat16":
        logging.warning(
            "--enable_xla with --amp on CPU: XLA's bfloat16 matmuls are slow here (the "
            "tools/bench_train --xla step ran at a third of the uncompiled one); drop "
            "--enable_xla for bfloat16 training on CPU"
        )
    if world == 1:
        return "step"
    logging.warning(
        "--enable_xla with %d ranks: the all-to-all cannot be compiled; using XLA "
        "auto-clustering for the rest of the step",
        world,
    )
    tf.config.optimizer.set_jit("autoclustering")
    return "auto"


def _step_watchdog(run: RunConfig, comm: Communicator) -> StepWatchdog | None:
    """This rank's watchdog (--step_timeout_s), or None when it is 0 (off)."""
    if run.step_timeout_s <= 0:
        return None
    return StepWatchdog(run.step_timeout_s, where=f"rank {comm.rank} of {comm.size}")


def _evaluate(job: _Job) -> dict[str, Any]:
    run, comm = job.config.run, job.comm
    evaluator = Evaluator(job.parallel, is_chief=comm.rank == 0, max_batches=run.max_steps)
    batches = job.data.split("test").as_dataset()
    watchdog = _step_watchdog(run, comm)
    if watchdog is not None:
        watchdog.start(job.state.step)
        try:
            with watchdog.watching("evaluation"):
                evaluation = evaluator.evaluate(batches, on_batch=watchdog.alive)
        finally:
            watchdog.stop()
    else:
        evaluation = evaluator.evaluate(batches)
    return {
        "auc": evaluation.auc,
        "validation_loss": evaluation.log_loss,
        "eval_samples": evaluation.samples,
        "throughput": evaluation.samples_per_second,
        "step": job.state.step,
    }


def _inference(job: _Job) -> dict[str, Any]:
    parallel, run = job.parallel, job.config.run
    result = benchmark(
        lambda features: parallel.forward(features["numerical"], features["categorical"]),
        job.data.split("test").as_dataset,
        steps=run.max_steps,
        warmup_steps=run.benchmark_warmup_steps,
        batch_size=job.config.data.valid_batch_size,
    )
    return result.as_dict()


def _export(model: DLRM, path: str, comm: Communicator) -> None:
    if comm.size > 1:
        # Each rank holds only its own tables' trained values.
        logging.warning(
            "--export_saved_model_path is ignored with %d ranks: restore the checkpoint in one "
            "process (--mode=eval --restore_checkpoint_path ...) to export",
            comm.size,
        )
        return
    export_saved_model(model, path)
    logging.info("exported SavedModel to %s", path)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = list(value) if isinstance(value, tuple) else value
    return flat


def dataset_error_in(error: tf.errors.OpError) -> str | None:
    """The DatasetError message carried by a TensorFlow error, if any.

    Batches are read inside `tf.data` (numpy_function), so a bad file found mid-run
    (an id outside its table, a label byte other than 0/1, a NaN numerical) reaches the
    training loop as an InvalidArgumentError whose text holds the original message
    (as the data of a failed assertion, `[DatasetError: ...]`, see models/data/pipeline.py).
    """
    match = re.search(r"\[DatasetError: ([^\n]*)\]", error.message) or re.search(
        r"DatasetError: ([^\n]*)", error.message
    )
    return match.group(1).strip() if match else None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app.define_help_flags()
    try:
        main(sys.argv)
    # What the user can fix (flags, dataset files, checkpoint) is reported without a
    # traceback; the messages name the flag, file or table.
    except (ConfigError, DatasetError, ckpt.CheckpointError, absl_flags.Error) as error:
        print(f"dlrm_main.py: {error}", file=sys.stderr)
        sys.exit(2)
    except tf.errors.InvalidArgumentError as error:
        message = dataset_error_in(error)
        if message is None:
            raise
        print(f"dlrm_main.py: {message}", file=sys.stderr)
        sys.exit(2)
    # A rank of the job died: say which instead of the failed collective's traceback.
    except tf.errors.OpError as error:
        message = lost_peer_message(error)
        if message is None:
            raise
        print(f"dlrm_main.py: {message}", file=sys.stderr)
        sys.exit(1)
