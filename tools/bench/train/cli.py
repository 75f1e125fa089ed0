"""Command line of `python -m tools.bench train`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from models.data.criteo import CRITEO_FT15_CARDINALITIES
from models.device import apply_threading
from tools.bench.train.processes import (
    ChildFailedError,
    format_processes,
    run_processes,
    summarize_processes,
)
from tools.bench.train.report import format_report
from tools.bench.train.run import run_benchmark
from tools.bench.train.setup import PRECISIONS, config_from_args
from tools.machine import describe_machine, format_machine


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    # The package, loaded by now: its docstring describes it.
    from tools.bench import train as bench_train

    parser = argparse.ArgumentParser(
        prog="python -m tools.bench train",
        description=bench_train.__doc__.split("\n\n")[0],
        allow_abbrev=False,  # --processes passes the other flags on to its children verbatim
    )
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
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="run the benchmark in N fresh processes one after another and report the "
        "spread over processes (0: in this process)",
    )
    args = parser.parse_args(argv)
    args.precisions = tuple(p for p in args.precisions.split(",") if p)
    bad = [p for p in args.precisions if p not in PRECISIONS]
    if bad or not args.precisions:
        parser.error(f"--precisions: {bad or 'none'} not in {list(PRECISIONS)}")
    if not 1 <= args.num_tables <= len(CRITEO_FT15_CARDINALITIES):
        parser.error(f"--num_tables must be in [1, 26], got {args.num_tables}")
    if args.processes < 0:
        parser.error(f"--processes must be >= 0, got {args.processes}")
    positive = ("steps", "window_steps", "batch_size", "max_rows", "distinct_batches")
    bad = [f"--{n}={getattr(args, n)}" for n in positive if getattr(args, n) < 1]
    if args.steps % max(args.window_steps, 1) or args.warmup_steps % max(args.window_steps, 1):
        bad.append("--steps and --warmup_steps must be multiples of --window_steps")
    if bad:
        parser.error(f"invalid: {', '.join(bad)}")
    return args


def _write_json(path: str | None, results: dict) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


def _main_over_processes(argv: Sequence[str], args: argparse.Namespace) -> int:
    """``--processes N``: N children with the other flags; the spread over them."""
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="bench_train_processes_") as directory:
        try:
            runs = run_processes(argv, args.processes, Path(directory))
        except ChildFailedError as error:
            print(f"error: --processes: {error}", file=sys.stderr)
            return 1
    summary = summarize_processes(runs)
    print(format_machine(machine))
    print(format_processes(summary, args.processes))
    _write_json(
        args.json,
        {"machine": machine, "processes": args.processes, "over_processes": summary, "runs": runs},
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    if args.processes:
        return _main_over_processes(argv, args)
    apply_threading(args.inter_op, args.intra_op)  # before TensorFlow runs any op
    config = config_from_args(args)
    results = run_benchmark(
        config,
        args.precisions,
        matmul_dims=args.matmul_dims,
        matmul_repeats=args.matmul_repeats,
        profile_steps=args.profile_steps,
        trace_dir=None if args.no_trace else (args.trace_dir or ""),
    )
    print(format_report(results))
    _write_json(args.json, results)
    return 0
