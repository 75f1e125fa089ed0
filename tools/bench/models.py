"""Training throughput of DLRM and DCNv2 on one configuration, against each one's compute bound.

Both models train through the real `TrainStep` under `Trainer.fit` (as in
`tools.bench.train`, whose set-up, batches and matmul probe this reuses), on
the same configuration: batch 4096, D = 128, bottom MLP 512-256-128, top
(deep) MLP 1024-1024-512-256-1, the 26 Criteo threshold-15 tables capped at
200,000 rows, SGD; DCNv2 adds MLPerf's cross network (3 cross layers of rank
512 over the 27 x 128 = 3456 concatenated features).

The compute bound of a model is this CPU's matmul rate divided by the
model's training FLOP per sample (`flops_per_sample`, which counts the cross
layers for DCNv2). The machine's speed drifts, so after a warm-up each round
measures the matmul rate and one window of each model back to back; the
figures are medians of the rounds, and the DCNv2/DLRM ratio is the median of
per-round ratios.

    python -m tools.bench models                            # both precisions
    python -m tools.bench models --precisions fp32 --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

import keras

from models.data.criteo import CRITEO_FT15_CARDINALITIES
from models.device import apply_threading
from tools.bench.train.bound import (
    FlopCount,
    dcnv2_flops_per_sample,
    flops_per_sample,
    matmul_gflops,
)
from tools.bench.train.setup import (
    PRECISIONS,
    BenchConfig,
    bench_batches,
    build_ours,
    config_from_args,
    train_ours,
)
from tools.machine import describe_machine, format_machine

MODEL_TYPES = ("dlrm", "dcnv2")


def model_flops(config: BenchConfig, model_type: str) -> FlopCount:
    """Training FLOP per sample of ``model_type`` with the dims of ``config``."""
    dims = (
        len(config.cardinalities),
        config.embedding_dim,
        config.bottom_mlp_dims,
        config.top_mlp_dims,
    )
    if model_type == "dcnv2":
        return dcnv2_flops_per_sample(
            *dims,
            config.num_cross_layers,
            config.cross_layer_projection_dim,
            config.num_numerical,
        )
    return flops_per_sample(*dims, config.num_numerical)


def measure(
    config: BenchConfig,
    precision: str,
    matmul_dims: tuple[int, int, int],
    log: Callable[[str], None] = print,
) -> dict[str, list[float]]:
    """Rounds of (matmul GFLOP/s, DLRM samples/s, DCNv2 samples/s) under one precision."""
    setups = {
        m: build_ours(dataclasses.replace(config, model_type=m), precision) for m in MODEL_TYPES
    }
    batches = bench_batches(config)
    dtype = PRECISIONS[precision][1]
    for model_type, setup in setups.items():
        if config.warmup_steps:
            train_ours(setup, batches, config.warmup_steps, config.batch_size)
            log(f"{precision} {model_type}: warmed up ({config.warmup_steps} steps)")
    rounds: dict[str, list[float]] = {"matmul_gflops": [], **{m: [] for m in MODEL_TYPES}}
    for _ in range(config.steps // config.window_steps):
        rounds["matmul_gflops"].append(matmul_gflops(dtype, *matmul_dims, 3))
        for model_type, setup in setups.items():
            rounds[model_type].append(
                train_ours(setup, batches, config.window_steps, config.batch_size)
            )
    del setups
    # Frees both models' tables (about 0.8 GB each) before the next precision.
    keras.backend.clear_session()
    gc.collect()
    return rounds


def summarize(rounds: dict[str, list[float]], training_flops: dict[str, int]) -> dict[str, Any]:
    """Medians per model, the bound from the median matmul rate, and the DCNv2/DLRM ratio."""
    gflops = statistics.median(rounds["matmul_gflops"])
    summary: dict[str, Any] = {"gflops_during_training": gflops, "models": {}}
    for model_type in MODEL_TYPES:
        samples = statistics.median(rounds[model_type])
        bound = gflops * 1e9 / training_flops[model_type]
        summary["models"][model_type] = {
            "samples_per_s": samples,
            "compute_bound_samples_per_s": bound,
            "fraction_of_bound": samples / bound,
            "achieved_gflops": samples * training_flops[model_type] / 1e9,
        }
    summary["dcnv2_over_dlrm"] = statistics.median(
        d / r for d, r in zip(rounds["dcnv2"], rounds["dlrm"], strict=True)
    )
    return summary


def run(
    config: BenchConfig,
    precisions: Sequence[str],
    matmul_dims: tuple[int, int, int] = (4096, 1024, 1024),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every measurement; the results as a JSON-ready dict."""
    flops = {m: model_flops(config, m) for m in MODEL_TYPES}
    results: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "flops_per_sample": {
            m: {**dataclasses.asdict(f), "training_flops": f.training_flops}
            for m, f in flops.items()
        },
        "precisions": {},
        # Other jobs on the machine skew absolute figures; the ratios of one round less so.
        "load_average_1min_start": os.getloadavg()[0],
    }
    for model_type, count in flops.items():
        log(f"{model_type}: {count.training_flops / 1e6:.2f} MFLOP per training sample ({count})")
    for precision in precisions:
        rounds = measure(config, precision, matmul_dims, log)
        for name, values in rounds.items():
            log(f"{precision} rounds, {name}: {[round(v) for v in values]}")
        training = {m: f.training_flops for m, f in flops.items()}
        results["precisions"][precision] = {"rounds": rounds, **summarize(rounds, training)}
    keras.mixed_precision.set_global_policy("float32")
    results["load_average_1min_end"] = os.getloadavg()[0]
    return results


def format_report(results: dict[str, Any]) -> str:
    lines = [
        "samples/s: medians of the rounds; bound: median matmul rate of the rounds / the "
        "model's training FLOP per sample",
        f"{'precision':<10}{'model':<7}{'MFLOP':>8}{'samples/s':>11}{'GFLOP/s':>9}"
        f"{'bound/s':>10}{'of bound':>10}",
    ]
    for precision, run_ in results["precisions"].items():
        for model_type, entry in run_["models"].items():
            mflop = results["flops_per_sample"][model_type]["training_flops"] / 1e6
            lines.append(
                f"{precision:<10}{model_type:<7}{mflop:>8.2f}{entry['samples_per_s']:>11,.0f}"
                f"{run_['gflops_during_training']:>9.0f}"
                f"{entry['compute_bound_samples_per_s']:>10,.0f}{entry['fraction_of_bound']:>10.0%}"
            )
        lines.append(
            f"{precision:<10}DCNv2 / DLRM samples/s: {run_['dcnv2_over_dlrm']:.3f} "
            "(median of per-round ratios)"
        )
    lines.append(
        f"load average {results['load_average_1min_start']:.1f} at start, "
        f"{results['load_average_1min_end']:.1f} at end"
    )
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench models", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model")
    parser.add_argument("--warmup_steps", type=int, default=5, help="untimed first steps")
    parser.add_argument("--window_steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--batch_size", type=int, default=4096)
    parser.add_argument("--embedding_dim", type=int, default=128)
    parser.add_argument("--bottom_mlp_dims", type=_ints, default=(512, 256, 128))
    parser.add_argument("--top_mlp_dims", type=_ints, default=(1024, 1024, 512, 256, 1))
    parser.add_argument("--num_cross_layers", type=int, default=3)
    parser.add_argument(
        "--cross_layer_projection_dim", type=int, default=512, help="0: full-rank cross layers"
    )
    parser.add_argument("--num_tables", type=int, default=26, help="first N Criteo tables")
    parser.add_argument("--max_rows", type=int, default=200_000, help="cap of each table's rows")
    parser.add_argument("--precisions", default="fp32,bf16", help=f"subset of {list(PRECISIONS)}")
    parser.add_argument("--distinct_batches", type=int, default=4, help="batches held in memory")
    parser.add_argument("--matmul_dims", type=_ints, default=(4096, 1024, 1024), help="m,k,n")
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
    positive = ("steps", "window_steps", "batch_size", "max_rows", "num_cross_layers")
    problems = [f"--{n}={getattr(args, n)}" for n in positive if getattr(args, n) < 1]
    if args.cross_layer_projection_dim < 0:
        problems.append(f"--cross_layer_projection_dim={args.cross_layer_projection_dim}")
    if args.steps % max(args.window_steps, 1) or args.warmup_steps < 0:
        problems.append("--steps must be a multiple of --window_steps, --warmup_steps >= 0")
    if problems:
        parser.error(f"invalid: {', '.join(problems)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    apply_threading(args.inter_op, args.intra_op)  # before TensorFlow runs any op
    config = config_from_args(args)
    machine = describe_machine()
    print(format_machine(machine))
    results = {"machine": machine, **run(config, args.precisions, matmul_dims=args.matmul_dims)}
    print(format_report(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0
