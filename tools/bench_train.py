"""Training throughput of our DLRM against a plain Keras 3 DLRM and the compute bound.

One run measures, on the benchmark configuration of issue 4 (batch 4096,
D = 128, MLPs 512-256-128 / 1024-1024-512-256-1, 26 tables with the Criteo 1TB
frequency-threshold-15 cardinalities capped at 200,000 rows, power-law ids):

1. this CPU's matmul rate ([4096, 1024] x [1024, 1024], fp32 and bf16) and the
   compute bound it implies: rate / training FLOP per sample (computed from
   the model dims, see `flops_per_sample`);
2. our DLRM trained through the real `TrainStep` under `Trainer.fit`, the way
   `dlrm_main.py` runs it (`HybridParallel` over `LocalCommunicator`, SGD with
   the reference schedule, the table update XLA-compiled when
   `models.device.xla_available`), per precision;
3. a plain Keras 3 DLRM written the obvious way (`keras.layers.Embedding` per
   table, `Dense`, dot interaction, `compile(SGD)` + `fit`), same data;
4. the input pipeline alone (`SyntheticDataset.as_dataset`).

Both models train on the same batches: a few distinct synthetic batches held
in memory and repeated, so that batch generation does not compete with the
step for the two cores (item 4 measures it separately). After warm-up, each
round measures the matmul rate, a window of our steps and a window of plain
Keras steps back to back: this machine's speed drifts by 2x within minutes
(other jobs), so the ratio is the median of per-round ratios and the compute
bound uses the matmul rate of the same rounds. With ``--profile_steps`` it
also times parts of our step (forward pieces, interaction backward, each
optimizer) and traces it with ``tf.profiler`` to list where the time goes.

    python -m tools.bench_train                              # the issue-4 benchmark
    python -m tools.bench_train --precisions fp32 --steps 30 --json out.json
    python -m tools.bench_train --inter_op 1 --intra_op 2   # TF thread pools (both models)

The cardinalities are NVIDIA's ``criteo_t15_synthetic`` variant
(DeepLearningExamples, TensorFlow2/Recommendation/DLRM_and_DCNv2), i.e. the
table sizes of Criteo 1TB preprocessed with frequency threshold 15.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.data.criteo import CRITEO_FT15_CARDINALITIES
from models.data.synthetic import SyntheticDataset
from models.device import apply_threading, resolve_device, xla_available
from models.distributed.comm import LocalCommunicator
from models.distributed.hybrid import HybridParallel
from models.distributed.placement import embedding_table_bytes, plan_placement
from models.dlrm import DLRM
from models.training.loop import LoopSettings
from models.training.lr_schedule import DLRMSchedule
from models.training.optimizers import make_optimizers
from models.training.train_step import TrainStep, bce_with_logits
from models.training.trainer import Trainer

PRECISIONS = {"fp32": ("float32", tf.float32), "bf16": ("mixed_bfloat16", tf.bfloat16)}
TARGET_FP32_RATIO = 1.3
TARGET_BF16_RATIO = 1.8
TARGET_PIPELINE_RATIO = 20.0


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Model dims and measurement lengths of one benchmark run."""

    cardinalities: tuple[int, ...]
    batch_size: int = 4096
    embedding_dim: int = 128
    bottom_mlp_dims: tuple[int, ...] = (512, 256, 128)
    top_mlp_dims: tuple[int, ...] = (1024, 1024, 512, 256, 1)
    num_numerical: int = 13
    warmup_steps: int = 10
    steps: int = 60
    window_steps: int = 10
    distinct_batches: int = 8
    pipeline_batches: int = 30
    seed: int = 0
    xla: bool = False


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """Multiply-adds (MAC) per sample of the dense parts of DLRM.

    One MAC is 2 FLOP. The backward pass costs twice the forward (a gradient
    with respect to the inputs and one with respect to the weights, each a
    matmul of the forward's size), so training costs 3x the forward pass.
    Element-wise work (bias, ReLU, casts, gathers) is not counted.
    """

    bottom_mlp_macs: int
    top_mlp_macs: int
    interaction_macs: int

    @property
    def forward_flops(self) -> int:
        return 2 * (self.bottom_mlp_macs + self.top_mlp_macs + self.interaction_macs)

    @property
    def training_flops(self) -> int:
        return 3 * self.forward_flops


def _mlp_macs(inputs: int, units: Sequence[int]) -> int:
    macs = 0
    for width in units:
        macs += inputs * width
        inputs = width
    return macs


def flops_per_sample(
    num_tables: int,
    embedding_dim: int,
    bottom_mlp_dims: Sequence[int],
    top_mlp_dims: Sequence[int],
    num_numerical: int = 13,
) -> FlopCount:
    """FLOP count of one training sample (see `FlopCount`).

    The interaction is the Gram matrix of the F + 1 vectors of size D, computed
    in full (``(F + 1)^2 D`` MAC) as `DotInteraction` does; the top MLP reads
    ``D + (F + 1) F / 2`` features. Reference dims: 14.75 MFLOP.
    """
    features = num_tables + 1
    return FlopCount(
        bottom_mlp_macs=_mlp_macs(num_numerical, bottom_mlp_dims),
        top_mlp_macs=_mlp_macs(embedding_dim + features * (features - 1) // 2, top_mlp_dims),
        interaction_macs=features * features * embedding_dim,
    )


def matmul_gflops(dtype: tf.DType, m: int, k: int, n: int, repeats: int) -> float:
    """Median GFLOP/s of an ``[m, k] x [k, n]`` product in ``dtype`` (after one warm-up)."""
    a = tf.random.uniform([m, k], dtype=tf.float32)
    b = tf.random.uniform([k, n], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    product = tf.function(tf.matmul)
    product(a, b).numpy()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()  # CPU tensors: numpy() waits for the result, no copy
        seconds.append(time.perf_counter() - start)
    return 2.0 * m * k * n / statistics.median(seconds) / 1e9


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

    model: DLRM
    parallel: HybridParallel
    step: TrainStep
    dense_optimizer: Any
    embedding_optimizer: Any


def build_ours(config: BenchConfig, precision: str) -> OursSetup:
    """Sets the precision policy and builds DLRM, HybridParallel, optimizers and TrainStep."""
    device = resolve_device(
        tf.config.list_physical_devices(), device="cpu", use_amp=precision != "fp32"
    )
    keras.mixed_precision.set_global_policy(device.policy_name)
    keras.utils.set_random_seed(config.seed)
    model = DLRM(
        config.cardinalities,
        embedding_dim=config.embedding_dim,
        bottom_mlp_dims=config.bottom_mlp_dims,
        top_mlp_dims=config.top_mlp_dims,
        num_numerical_features=config.num_numerical,
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


class PlainDotInteraction(keras.layers.Layer):
    """``[b, F + 1, D]`` -> ``[b, (F + 1) F / 2]`` pairwise dots (the plain baseline's)."""

    def call(self, features):
        n = features.shape[1]
        gram = keras.ops.matmul(features, keras.ops.transpose(features, (0, 2, 1)))
        rows, cols = np.tril_indices(n, k=-1)
        flat = keras.ops.reshape(gram, (-1, n * n))
        return keras.ops.take(flat, rows * n + cols, axis=1)


def build_plain_keras(config: BenchConfig, precision: str) -> keras.Model:
    """DLRM the way a Keras user writes it: functional model, compile(SGD), default settings."""
    keras.mixed_precision.set_global_policy(PRECISIONS[precision][0])
    keras.utils.set_random_seed(config.seed)
    numerical = keras.Input((config.num_numerical,), name="numerical")
    categorical = keras.Input((len(config.cardinalities),), dtype="int32", name="categorical")
    bottom = numerical
    for units in config.bottom_mlp_dims:
        bottom = keras.layers.Dense(units, activation="relu")(bottom)
    vectors = [
        keras.layers.Embedding(rows, config.embedding_dim)(categorical[:, i])
        for i, rows in enumerate(config.cardinalities)
    ]
    features = keras.ops.stack([bottom, *vectors], axis=1)
    top = keras.layers.Concatenate()([bottom, PlainDotInteraction()(features)])
    for units in config.top_mlp_dims[:-1]:
        top = keras.layers.Dense(units, activation="relu")(top)
    # The mixed-precision guide's advice: the output layer in float32.
    logits = keras.layers.Dense(config.top_mlp_dims[-1], dtype="float32")(top)
    model = keras.Model({"numerical": numerical, "categorical": categorical}, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=DLRMSchedule(24.0)),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


class _BatchClock(keras.callbacks.Callback):
    """Time from the start of the first batch to the end of the epoch.

    Only ``on_train_batch_begin`` is overridden, so Keras keeps its default
    asynchronous dispatch of batch-end callbacks, and the time excludes what
    `fit` does before the first batch (adapters, iterator, callbacks).
    """

    def __init__(self) -> None:
        super().__init__()
        self.start = self.end = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if batch == 0:
            self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.end = time.perf_counter()


def train_plain_keras(
    model: keras.Model, batches: tf.data.Dataset, steps: int, batch_size: int
) -> float:
    """``model.fit`` for ``steps`` steps (one epoch); returns its samples/s."""
    clock = _BatchClock()
    model.fit(
        batches,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,  # the batches are already shuffled; silences Keras' warning
        callbacks=[clock],
    )
    return steps * batch_size / (clock.end - clock.start)


def compare(
    config: BenchConfig,
    setup: OursSetup,
    model: keras.Model,
    batches: tf.data.Dataset,
    matmul: Callable[[], float],
) -> dict[str, list[float]]:
    """Warms both models up, then alternates timed windows of ours and of plain Keras.

    Each round measures the matmul rate (``matmul()``, GFLOP/s), a window of
    ours and one of plain Keras, so that ratios and fractions of the compute
    bound compare figures taken at the same machine speed (other jobs and
    clock changes make it drift by 2x here). Returns the per-round lists
    ``ours``, ``plain_keras`` (samples/s) and ``matmul_gflops``.
    """
    b = config.batch_size
    if config.warmup_steps:
        train_ours(setup, batches, config.warmup_steps, b)
        train_plain_keras(model, batches, config.warmup_steps, b)
    rounds: dict[str, list[float]] = {"ours": [], "plain_keras": [], "matmul_gflops": []}
    for _ in range(config.steps // config.window_steps):
        rounds["matmul_gflops"].append(matmul())
        rounds["ours"].append(train_ours(setup, batches, config.window_steps, b))
        rounds["plain_keras"].append(train_plain_keras(model, batches, config.window_steps, b))
    return rounds


def interleaved_median_ms(parts: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall milliseconds of each part, the parts called in turn ``repeats`` times.

    Round-robin rather than one part after the other, so that a change of
    machine speed during the measurement affects every part alike.
    """
    for fn in parts.values():
        fn()  # traces the function
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn())
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _phase(op_name: str) -> str:
    """Forward, backward or update, from the name scopes TensorFlow gives an op."""
    if "gradient_tape" in op_name or "gradients" in op_name.lower():
        return "backward"
    if any(key in op_name.lower() for key in ("optimizer", "sgd", "scatter", "apply_gradients")):
        return "update"
    return "forward"


def trace_op_types(step: Callable[[], Any], steps: int, trace_dir: str) -> dict[str, Any]:
    """Traces ``steps`` calls of ``step`` with tf.profiler; self time by op type and phase.

    Times are thread time (the sum over TensorFlow's threads), so they can
    exceed the wall time of a step on several cores. Uses TensorFlow's own
    trace converter (``framework_op_stats``, private API): an empty dict if
    it is missing.
    """
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError:
        return {}
    step()
    with tempfile.TemporaryDirectory(prefix="bench_train_trace_") as scratch:
        directory = trace_dir or scratch
        tf.profiler.experimental.start(directory)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        planes = sorted(Path(directory).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
        data, ok = plugin.xspace_to_tools_data([str(planes[-1])], "framework_op_stats", {})
    if not ok:
        return {}
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    by_type: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for row in table["rows"]:
        cells = dict(zip(columns, (c.get("v") for c in row["c"]), strict=True))
        if cells["type"] == "IDLE":
            continue
        us = float(cells["total_self_time"])
        by_type[cells["type"]] = by_type.get(cells["type"], 0.0) + us
        phase = _phase(str(cells["operation"]))
        by_phase[phase] = by_phase.get(phase, 0.0) + us
    total = sum(by_type.values()) or 1.0

    def rows(sums: dict[str, float]) -> list[dict[str, Any]]:
        ranked = sorted(sums.items(), key=lambda item: -item[1])
        return [
            {"name": k, "percent": 100 * v / total, "thread_ms_per_step": v / steps / 1e3}
            for k, v in ranked
        ]

    return {"by_type": rows(by_type), "by_phase": rows(by_phase)}


def _graph(fn: Callable) -> Callable:
    """`tf.function` without AutoGraph.

    These bodies have no Python control flow, and AutoGraph's source lookup of
    lambdas fails when the file is edited while a benchmark runs.
    """
    return tf.function(fn, autograph=False)


def profile_ours(
    setup: OursSetup, batches: tf.data.Dataset, repeats: int, trace_dir: str | None
) -> dict[str, Any]:
    """Milliseconds of the parts of our step, and an op-type trace summary.

    Parts are separate `tf.function`s on one batch: forward pieces, the
    interaction's forward + backward, forward + loss, forward + backward
    (gradients computed, not applied), each optimizer on those gradients,
    and the whole `TrainStep`; the backward time is a difference.
    ``trace_dir`` None skips the trace; "" traces into a temporary directory.
    """
    model, parallel = setup.model, setup.parallel
    features, labels = next(iter(batches))
    numerical, categorical = features["numerical"], features["categorical"]
    tables = range(model.num_tables)
    # The F vectors go to the interaction as pieces, as HybridParallel passes them.
    lookup = _graph(lambda ids: model.lookup(ids, tables))
    embeddings = lookup(categorical)
    bottom_mlp = _graph(lambda x: model.bottom_mlp(x))
    bottom = bottom_mlp(numerical)
    interaction = _graph(lambda b, e: model.interaction(b, list(e)))
    top_mlp = _graph(lambda x: model.top_mlp(x))
    interacted = interaction(bottom, embeddings)
    dense_vars, table_vars = model.dense_variables, parallel.owned_embedding_variables

    @_graph
    def interaction_backward(b, e):
        with tf.GradientTape() as tape:
            tape.watch([b, e])
            out = tf.cast(interaction(b, e), tf.float32)
        return tape.gradient(out, [b, e], output_gradients=tf.ones_like(out))

    @_graph
    def forward(num, cat, lab):
        return bce_with_logits(lab, parallel.forward(num, cat))

    @_graph
    def gradients(num, cat, lab):
        with tf.GradientTape() as tape:
            loss = bce_with_logits(lab, parallel.forward(num, cat))
        return tape.gradient(loss, dense_vars + table_vars)

    grads = gradients(numerical, categorical, labels)
    dense_grads, table_grads = grads[: len(dense_vars)], grads[len(dense_vars) :]

    @_graph
    def dense_update(g):
        setup.dense_optimizer.apply_gradients(zip(g, dense_vars, strict=True))
        return tf.constant(0)

    @_graph
    def table_update(g):
        setup.embedding_optimizer.apply_gradients(zip(g, table_vars, strict=True))
        return tf.constant(0)

    parts: dict[str, Callable[[], Any]] = {
        "lookup (F gathers)": lambda: lookup(categorical),
        "bottom MLP forward": lambda: bottom_mlp(numerical),
        "interaction forward": lambda: interaction(bottom, embeddings),
        "interaction fwd + bwd": lambda: interaction_backward(bottom, embeddings),
        "top MLP forward": lambda: top_mlp(interacted),
        "forward + loss": lambda: forward(numerical, categorical, labels),
        "forward + backward": lambda: gradients(numerical, categorical, labels),
        "dense optimizer (Keras SGD)": lambda: dense_update(dense_grads),
        "embedding optimizer (sparse)": lambda: table_update(table_grads),
        "whole train step": lambda: setup.step(features, labels),
    }
    ms = interleaved_median_ms(parts, repeats)
    ms["backward (difference)"] = ms["forward + backward"] - ms["forward + loss"]
    result: dict[str, Any] = {"part_ms": ms}
    if trace_dir is not None:
        result["op_types"] = trace_op_types(
            lambda: setup.step(features, labels).numpy(), repeats, trace_dir
        )
    return result


def _release_memory() -> None:
    """Frees the tables of models the caller has dropped (about 0.8 GB per model)."""
    keras.backend.clear_session()
    gc.collect()


def run_benchmark(
    config: BenchConfig,
    precisions: Sequence[str],
    matmul_dims: tuple[int, int, int] = (4096, 1024, 1024),
    matmul_repeats: int = 10,
    profile_steps: int = 0,
    trace_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs every measurement; returns the results as a JSON-ready dict."""
    flops = flops_per_sample(
        len(config.cardinalities),
        config.embedding_dim,
        config.bottom_mlp_dims,
        config.top_mlp_dims,
        config.num_numerical,
    )
    results: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "flops_per_sample": {
            **dataclasses.asdict(flops),
            "forward_flops": flops.forward_flops,
            "training_flops": flops.training_flops,
        },
        "matmul": {},
        "precisions": {},
        # Other jobs on the machine skew absolute figures (ratios much less: see compare).
        "load_average_1min_start": os.getloadavg()[0],
    }
    log(f"training FLOP per sample: {flops.training_flops / 1e6:.3f} M ({flops})")
    for precision in precisions:
        gflops = matmul_gflops(PRECISIONS[precision][1], *matmul_dims, matmul_repeats)
        results["matmul"][precision] = {"gflops_at_start": gflops}
        log(f"matmul {matmul_dims} {precision} at start: {gflops:.1f} GFLOP/s")
    results["pipeline_samples_per_s"] = pipeline_rate(config)
    log(f"input pipeline alone: {results['pipeline_samples_per_s']:,.0f} samples/s")
    batches = bench_batches(config)
    for precision in precisions:
        setup = build_ours(config, precision)
        model = build_plain_keras(config, precision)
        dtype = PRECISIONS[precision][1]
        rounds = compare(
            config, setup, model, batches, lambda d=dtype: matmul_gflops(d, *matmul_dims, 3)
        )
        for name, values in rounds.items():
            log(f"{precision} rounds, {name}: {[round(v) for v in values]}")
        entry: dict[str, Any] = {f"{name}_rounds": values for name, values in rounds.items()}
        if profile_steps:
            entry["profile"] = profile_ours(setup, batches, profile_steps, trace_dir)
        del setup, model
        _release_memory()
        entry.update(summarize_rounds(rounds, flops.training_flops))
        results["matmul"][precision].update(
            gflops_during_training=statistics.median(rounds["matmul_gflops"]),
            compute_bound_samples_per_s=entry.pop("compute_bound_samples_per_s"),
        )
        results["precisions"][precision] = entry
    keras.mixed_precision.set_global_policy("float32")
    results["load_average_1min_end"] = os.getloadavg()[0]
    results["targets"] = _targets(results)
    return results


def summarize_rounds(rounds: dict[str, list[float]], training_flops: int) -> dict[str, float]:
    """Medians of the rounds of `compare`, the ratio and the fractions of the compute bound.

    The ratio is the median of the per-round ratios (each round's two windows
    ran back to back, at about the same machine speed); the ratio of the two
    medians is kept too. The bound is the median matmul rate of the rounds
    divided by the training FLOP per sample.
    """
    ours, plain = rounds["ours"], rounds["plain_keras"]
    bound = statistics.median(rounds["matmul_gflops"]) * 1e9 / training_flops
    return {
        "ours_samples_per_s": statistics.median(ours),
        "plain_keras_samples_per_s": statistics.median(plain),
        "ratio_ours_over_plain": statistics.median(o / p for o, p in zip(ours, plain, strict=True)),
        "ratio_of_medians": statistics.median(ours) / statistics.median(plain),
        "compute_bound_samples_per_s": bound,
        "ours_fraction_of_bound": statistics.median(ours) / bound,
        "plain_keras_fraction_of_bound": statistics.median(plain) / bound,
    }


def _targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs = results["precisions"]
    targets: dict[str, dict[str, Any]] = {}
    for precision, target in (("fp32", TARGET_FP32_RATIO), ("bf16", TARGET_BF16_RATIO)):
        if precision in runs:
            value = runs[precision]["ratio_ours_over_plain"]
            targets[f"{precision}_ours_over_plain_keras"] = {
                "target": target,
                "value": value,
                "met": value >= target,
            }
    # The pipeline must feed the fastest of our steps.
    fastest = max(run["ours_samples_per_s"] for run in runs.values())
    value = results["pipeline_samples_per_s"] / fastest
    targets["pipeline_over_fastest_step"] = {
        "target": TARGET_PIPELINE_RATIO,
        "value": value,
        "met": value >= TARGET_PIPELINE_RATIO,
    }
    return targets


def format_report(results: dict[str, Any]) -> str:
    """The summary table (throughputs, ratios, bound fractions, targets, profile)."""
    lines = [
        "samples/s: medians of the rounds; ratio: median of per-round ratios (ratio of "
        "medians in brackets); bound: median matmul rate of the rounds / FLOP per sample",
        f"{'precision':<10}{'ours/s':>9}{'keras/s':>9}{'ratio':>14}{'GFLOP/s':>9}{'bound/s':>11}"
        f"{'ours/bound':>12}{'keras/bound':>13}",
    ]
    for precision, run in results["precisions"].items():
        matmul = results["matmul"][precision]
        ratio = f"{run['ratio_ours_over_plain']:.2f} ({run['ratio_of_medians']:.2f})"
        lines.append(
            f"{precision:<10}{run['ours_samples_per_s']:>9,.0f}"
            f"{run['plain_keras_samples_per_s']:>9,.0f}{ratio:>14}"
            f"{matmul['gflops_during_training']:>9.0f}"
            f"{matmul['compute_bound_samples_per_s']:>11,.0f}{run['ours_fraction_of_bound']:>12.0%}"
            f"{run['plain_keras_fraction_of_bound']:>13.0%}"
        )
    lines.append(
        f"input pipeline alone: {results['pipeline_samples_per_s']:,.0f} samples/s; load "
        f"average {results['load_average_1min_start']:.1f} at start, "
        f"{results['load_average_1min_end']:.1f} at end (2 cores)"
    )
    for name, target in results["targets"].items():
        verdict = "MET" if target["met"] else "NOT MET"
        lines.append(f"target {name}: {target['value']:.2f} (>= {target['target']}) {verdict}")
    for precision, run in results["precisions"].items():
        if "profile" in run:
            lines.append(f"profile of our step, {precision} (ms, median):")
            lines.extend(f"  {name:<28}{ms:8.1f}" for name, ms in run["profile"]["part_ms"].items())
            trace = run["profile"].get("op_types") or {}
            for key in ("by_phase", "by_type"):
                lines.append(f"  thread time {key.replace('_', ' ')} (% of traced, ms/step):")
                lines.extend(
                    f"    {row['name']:<34}{row['percent']:6.1f}%{row['thread_ms_per_step']:9.1f}"
                    for row in trace.get(key, [])[:15]
                )
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per model")
    parser.add_argument("--warmup_steps", type=int, default=10, help="untimed first steps")
    parser.add_argument("--window_steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--batch_size", type=int, default=4096)
    parser.add_argument("--embedding_dim", type=int, default=128)
    parser.add_argument("--bottom_mlp_dims", type=_ints, default=(512, 256, 128))
    parser.add_argument("--top_mlp_dims", type=_ints, default=(1024, 1024, 512, 256, 1))
    parser.add_argument("--num_tables", type=int, default=26, help="first N Criteo tables")
    parser.add_argument("--max_rows", type=int, default=200_000, help="cap of each table's rows")
    parser.add_argument("--precisions", default="fp32,bf16", help=f"subset of {list(PRECISIONS)}")
    parser.add_argument("--distinct_batches", type=int, default=8, help="batches held in memory")
    parser.add_argument("--pipeline_batches", type=int, default=30)
    parser.add_argument("--matmul_dims", type=_ints, default=(4096, 1024, 1024), help="m,k,n")
    parser.add_argument("--matmul_repeats", type=int, default=10)
    parser.add_argument("--profile_steps", type=int, default=10, help="0: no profile")
    parser.add_argument("--trace_dir", default=None, help="keep the tf.profiler trace here")
    parser.add_argument("--no_trace", action="store_true", help="part timings only")
    parser.add_argument("--xla", action="store_true", help="compile our step with XLA")
    parser.add_argument("--inter_op", type=int, default=None, help="TF inter-op threads")
    parser.add_argument("--intra_op", type=int, default=None, help="TF intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    args.precisions = tuple(p for p in args.precisions.split(",") if p)
    bad = [p for p in args.precisions if p not in PRECISIONS]
    if bad or not args.precisions:
        parser.error(f"--precisions: {bad or 'none'} not in {list(PRECISIONS)}")
    if not 1 <= args.num_tables <= len(CRITEO_FT15_CARDINALITIES):
        parser.error(f"--num_tables must be in [1, 26], got {args.num_tables}")
    positive = ("steps", "window_steps", "batch_size", "max_rows", "distinct_batches")
    bad = [f"--{n}={getattr(args, n)}" for n in positive if getattr(args, n) < 1]
    if args.steps % max(args.window_steps, 1) or args.warmup_steps % max(args.window_steps, 1):
        bad.append("--steps and --warmup_steps must be multiples of --window_steps")
    if bad:
        parser.error(f"invalid: {', '.join(bad)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    apply_threading(args.inter_op, args.intra_op)  # before TensorFlow runs any op
    config = BenchConfig(
        cardinalities=tuple(min(n, args.max_rows) for n in CRITEO_FT15_CARDINALITIES)[
            : args.num_tables
        ],
        batch_size=args.batch_size,
        embedding_dim=args.embedding_dim,
        bottom_mlp_dims=args.bottom_mlp_dims,
        top_mlp_dims=args.top_mlp_dims,
        warmup_steps=args.warmup_steps,
        steps=args.steps,
        window_steps=args.window_steps,
        distinct_batches=args.distinct_batches,
        pipeline_batches=args.pipeline_batches,
        seed=args.seed,
        xla=args.xla,
    )
    results = run_benchmark(
        config,
        args.precisions,
        matmul_dims=args.matmul_dims,
        matmul_repeats=args.matmul_repeats,
        profile_steps=args.profile_steps,
        trace_dir=None if args.no_trace else (args.trace_dir or ""),
    )
    print(format_report(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
