"""The benchmark configuration, its batches, and our model wired as `dlrm_main` wires it."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.data.criteo import CRITEO_FT15_CARDINALITIES
from models.data.synthetic import SyntheticDataset
from models.device import resolve_device, xla_available
from models.distributed.comm import LocalCommunicator
from models.distributed.hybrid import HybridParallel
from models.distributed.placement import embedding_table_bytes, plan_placement
from models.model_types import MODEL_TYPES
from models.ranking import RankingModel
from models.training.loop import LoopSettings
from models.training.lr_schedule import DLRMSchedule
from models.training.optimizers import make_optimizers
from models.training.train_step import TrainStep
from models.training.trainer import Trainer

PRECISIONS = {"fp32": ("float32", tf.float32), "bf16": ("mixed_bfloat16", tf.bfloat16)}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Model dims and measurement lengths of one benchmark run."""

    cardinalities: tuple[int, ...]
    batch_size: int = 4096
    embedding_dim: int = 128
    bottom_mlp_dims: tuple[int, ...] = (512, 256, 128)
    top_mlp_dims: tuple[int, ...] = (1024, 1024, 512, 256, 1)
    num_numerical: int = 13
    model_type: str = "dlrm"  # or "dcnv2", with the two fields below (MLPerf's sizes)
    num_cross_layers: int = 3
    cross_layer_projection_dim: int = 512  # 0: full rank
    warmup_steps: int = 10
    steps: int = 60
    window_steps: int = 10
    distinct_batches: int = 8
    pipeline_batches: int = 30
    seed: int = 0
    xla: bool = False


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The `BenchConfig` of a benchmark's command line.

    Tables: the first ``--num_tables`` Criteo threshold-15 tables capped at
    ``--max_rows``; every other field from the flag of the same name when
    the command has one, else the field's default.
    """
    fields = {field.name for field in dataclasses.fields(BenchConfig)} - {"cardinalities"}
    cardinalities = tuple(min(n, args.max_rows) for n in CRITEO_FT15_CARDINALITIES)
    return BenchConfig(
        cardinalities=cardinalities[: args.num_tables],
        **{name: value for name, value in vars(args).items() if name in fields},
    )


def bench_batches(config: BenchConfig) -> tf.data.Dataset:
    """``config.distinct_batches`` power-law batches held in memory, repeated forever."""
    data = SyntheticDataset(
        config.batch_size,
        config.distinct_batches,
        config.cardinalities,
        num_numerical=config.num_numerical,
        seed=config.seed,
    )
    arrays = [data.read_batch(i) for i in range(config.distinct_batches)]
    numerical, categorical, labels = (np.stack(column) for column in zip(*arrays, strict=True))
    features = {"numerical": numerical, "categorical": categorical}
    return tf.data.Dataset.from_tensor_slices((features, labels)).repeat().prefetch(2)


def pipeline_rate(config: BenchConfig) -> float:
    """Samples/s of `SyntheticDataset.as_dataset` alone (power-law mode, first batch excluded)."""
    data = SyntheticDataset(
        config.batch_size,
        config.pipeline_batches + 1,
        config.cardinalities,
        num_numerical=config.num_numerical,
        seed=config.seed + 1,
    )
    iterator = iter(data.as_dataset())
    next(iterator)  # starts the tf.data threads
    start = time.perf_counter()
    batches = sum(1 for _ in iterator)
    return batches * config.batch_size / (time.perf_counter() - start)


class _NoHooks:
    """`Trainer` hooks of a run without evaluations, checkpoints or progress output."""

    def progress(self, step: int, metrics: dict[str, float]) -> None:
        del step, metrics

    def evaluate(self, step: int, alive: Callable[[], None]) -> Any:
        raise AssertionError("the benchmark runs no evaluation")

    def save_checkpoint(self, step: int, epoch: int, batch: int) -> None:
        del step, epoch, batch


@dataclasses.dataclass
class OursSetup:
    """Our model wired as `dlrm_main.run` wires it (world size 1)."""

    model: RankingModel
    parallel: HybridParallel
    step: TrainStep
    dense_optimizer: Any
    embedding_optimizer: Any


def build_ours(config: BenchConfig, precision: str) -> OursSetup:
    """Sets the precision policy and builds the model (``config.model_type``),
    HybridParallel, optimizers and TrainStep."""
    device = resolve_device(
        tf.config.list_physical_devices(), device="cpu", use_amp=precision != "fp32"
    )
    keras.mixed_precision.set_global_policy(device.policy_name)
    keras.utils.set_random_seed(config.seed)
    cross = {}
    if config.model_type == "dcnv2":
        cross = dict(
            num_cross_layers=config.num_cross_layers,
            cross_layer_projection_dim=config.cross_layer_projection_dim or None,
        )
    model = MODEL_TYPES[config.model_type](
        config.cardinalities,
        embedding_dim=config.embedding_dim,
        bottom_mlp_dims=config.bottom_mlp_dims,
        top_mlp_dims=config.top_mlp_dims,
        num_numerical_features=config.num_numerical,
        **cross,
    )
    placement = plan_placement(embedding_table_bytes(config.cardinalities, config.embedding_dim), 1)
    parallel = HybridParallel(model, LocalCommunicator(), placement, config.batch_size)
    # The reference SGD run: lr 24, warm-up 8000, decay from 48000 over 24000 steps.
    dense_optimizer, embedding_optimizer = make_optimizers(
        "sgd", DLRMSchedule(24.0), jit_embedding_update=xla_available(device.kind)
    )
    step = TrainStep(
        parallel,
        model.dense_variables,
        parallel.owned_embedding_variables,
        dense_optimizer,
        embedding_optimizer,
        loss_scale=device.loss_scale,
        jit_compile=config.xla,
    )
    return OursSetup(model, parallel, step, dense_optimizer, embedding_optimizer)


def train_ours(setup: OursSetup, batches: tf.data.Dataset, steps: int, batch_size: int) -> float:
    """``steps`` steps of `Trainer.fit` (the dlrm_main loop); returns its samples/s.

    The Trainer's clock runs from before the first batch is fetched to the
    device sync after the last step.
    """
    settings = LoopSettings(
        epochs=1,
        steps_per_epoch=steps,
        evals_per_epoch=0,
        print_freq=steps,
        global_batch_size=batch_size,
    )
    trainer = Trainer(setup.step, settings, _NoHooks(), learning_rate=lambda step: 0.0)
    return trainer.fit(lambda epoch, start: batches.take(steps)).samples_per_second
