"""The measurement: rounds of matmul, our steps and plain Keras steps; the results dict."""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from tools.bench.train.bound import StepMatmuls, flops_per_sample, matmul_gflops, step_matmuls
from tools.bench.train.plain_keras import build_plain_keras, train_plain_keras
from tools.bench.train.report import summarize_rounds, targets
from tools.bench.train.setup import (
    PRECISIONS,
    BenchConfig,
    OursSetup,
    bench_batches,
    build_ours,
    pipeline_rate,
    train_ours,
)
from tools.bench.train.step_profile import profile_ours
from tools.machine import describe_machine


def compare(
    config: BenchConfig,
    setup: OursSetup,
    model: keras.Model,
    batches: tf.data.Dataset,
    matmul: Callable[[], float],
    shapes_bound: Callable[[], float],
) -> dict[str, list[float]]:
    """Warms both models up, then alternates timed windows of ours and of plain Keras.

    Each round measures the matmul rate (``matmul()``, GFLOP/s), the bound of
    the step's own products (``shapes_bound()``, samples/s), a window of ours
    and one of plain Keras, so that ratios and fractions of the bounds compare
    figures taken at the same machine speed (other jobs and clock changes
    make it drift by 2x here). Returns the per-round lists ``ours``,
    ``plain_keras``, ``shapes_bound`` (samples/s) and ``matmul_gflops``.
    """
    b = config.batch_size
    if config.warmup_steps:
        train_ours(setup, batches, config.warmup_steps, b)
        train_plain_keras(model, batches, config.warmup_steps, b)
    rounds: dict[str, list[float]] = {
        "ours": [],
        "plain_keras": [],
        "matmul_gflops": [],
        "shapes_bound": [],
    }
    for _ in range(config.steps // config.window_steps):
        rounds["matmul_gflops"].append(matmul())
        rounds["shapes_bound"].append(shapes_bound())
        rounds["ours"].append(train_ours(setup, batches, config.window_steps, b))
        rounds["plain_keras"].append(train_plain_keras(model, batches, config.window_steps, b))
    return rounds


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
        "machine": describe_machine(),
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
    shapes = step_matmuls(
        config.batch_size,
        len(config.cardinalities),
        config.embedding_dim,
        config.bottom_mlp_dims,
        config.top_mlp_dims,
        config.num_numerical,
    )
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
        products = StepMatmuls(shapes, dtype)
        rounds = compare(
            config,
            setup,
            model,
            batches,
            lambda d=dtype: matmul_gflops(d, *matmul_dims, 3),
            lambda p=products: config.batch_size / sum(p.seconds(3).values()),
        )
        for name, values in rounds.items():
            log(f"{precision} rounds, {name}: {[round(v) for v in values]}")
        entry: dict[str, Any] = {f"{name}_rounds": values for name, values in rounds.items()}
        entry["shapes_ms"] = {name: 1e3 * t for name, t in products.seconds(5).items()}
        if profile_steps:
            entry["profile"] = profile_ours(setup, batches, profile_steps, trace_dir)
        del setup, model, products
        _release_memory()
        entry.update(summarize_rounds(rounds, flops.training_flops))
        results["matmul"][precision].update(
            gflops_during_training=statistics.median(rounds["matmul_gflops"]),
            compute_bound_samples_per_s=entry.pop("compute_bound_samples_per_s"),
        )
        results["precisions"][precision] = entry
    keras.mixed_precision.set_global_policy("float32")
    results["load_average_1min_end"] = os.getloadavg()[0]
    results["targets"] = targets(results)
    return results
