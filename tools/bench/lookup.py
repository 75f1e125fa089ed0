"""Embedding lookups and sparse updates with and without huge pages (`models.huge_pages`).

    python -m tools.bench lookup                       # 26 tables of 200k x 128, batch 4096
    python -m tools.bench lookup --rows 2000000 --tables 8 --json out.json

For each id law (``uniform``: every row equally likely, as hashed ids;
``powerlaw``: the synthetic data's bounded log-uniform law, frequent ids
first, as frequency-sorted vocabularies) the measurement runs in two fresh
processes, one with ``DLRM_HUGE_PAGES=0`` and one restarted with glibc's
huge-page tunable as ``dlrm_main.py`` is, and reports the median time of
the compiled lookup (one gather per table) and of the sparse SGD update
(one scatter-subtract per table), and how much of the process's memory the
kernel put on huge pages. The last column is the training optimizer's SGD
step (`SparseSGD`) with ``--embedding_weight_decay`` on: the row update plus
the decay of every row, the per-step price of that flag at this table size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

LAWS = ("uniform", "powerlaw")


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench lookup", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--tables", type=int, default=26)
    parser.add_argument("--rows", type=int, default=200_000, help="rows of each table")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--laws", default=",".join(LAWS), help=f"subset of {list(LAWS)}")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--child", choices=LAWS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.laws = [law for law in args.laws.split(",") if law]
    if not args.laws or any(law not in LAWS for law in args.laws):
        parser.error(f"--laws must name some of {list(LAWS)}, got {args.laws}")
    for name in ("tables", "rows", "dim", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def _ids(law: str, rows: int, size: int, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    if law == "uniform":
        return rng.integers(0, rows, size, dtype=np.int64)
    # floor(rows ** u) - 1: P(id = k) about proportional to 1 / (k + 1).
    ids = np.exp(rng.random(size) * np.log(rows)).astype(np.int64) - 1
    return np.minimum(ids, rows - 1)


def _huge_kib() -> int | None:
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure(args: argparse.Namespace, law: str) -> dict[str, Any]:
    """Median milliseconds of the compiled lookup and update of ``args.tables`` tables."""
    import tensorflow as tf

    from models.huge_pages import huge_pages_state
    from models.training.optimizers import SparseSGD

    tables = [
        tf.Variable(tf.random.uniform([args.rows, args.dim]), name=f"table_{t}")
        for t in range(args.tables)
    ]
    ids = [
        tf.constant(_ids(law, args.rows, args.batch_size, seed=t), tf.int64)
        for t in range(args.tables)
    ]
    update = tf.ones([args.batch_size, args.dim]) * 1e-6

    @tf.function
    def lookup() -> list[tf.Tensor]:
        return [tf.gather(table, i) for table, i in zip(tables, ids, strict=True)]

    @tf.function
    def sparse_sgd() -> tf.Tensor:
        for table, i in zip(tables, ids, strict=True):
            table.scatter_sub(tf.IndexedSlices(update, i))
        return tf.constant(0)

    decaying = SparseSGD(1e-3, weight_decay=1e-3)

    @tf.function
    def decayed_sgd() -> tf.Tensor:
        rows = tf.constant([args.rows, args.dim], tf.int64)
        decaying.apply_gradients(
            (tf.IndexedSlices(update, i, dense_shape=rows), table)
            for table, i in zip(tables, ids, strict=True)
        )
        return tf.constant(0)

    def median_ms(fn: Any) -> float:
        tf.nest.map_structure(lambda t: t.numpy(), fn())  # traces, warms up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn())
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    return {
        "law": law,
        "huge_pages": huge_pages_state(),
        "anon_huge_pages_kib": _huge_kib(),
        "lookup_ms": median_ms(lookup),
        "update_ms": median_ms(sparse_sgd),
        "decayed_update_ms": median_ms(decayed_sgd),
    }


def _child_run(argv: Sequence[str], law: str, huge_pages: bool) -> dict[str, Any]:
    env = {**os.environ, "DLRM_HUGE_PAGES": "1" if huge_pages else "0"}
    if not huge_pages:
        env.pop("GLIBC_TUNABLES", None)
    command = [sys.executable, "-m", "tools.bench", "lookup", *argv, f"--child={law}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_args(argv)
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return 0
    from tools.machine import describe_machine, format_machine

    machine = describe_machine(with_tensorflow=False)
    parent_flags = [
        f"--{name}={getattr(args, name)}"
        for name in ("tables", "rows", "dim", "batch_size", "repeats")
    ]
    runs = [_child_run(parent_flags, law, huge) for law in args.laws for huge in (False, True)]
    print(format_machine(machine))
    print(
        f"{args.tables} tables of {args.rows} x {args.dim} float32, batch {args.batch_size}, "
        f"median of {args.repeats}; each row: a fresh process"
    )
    print(
        f"{'ids':<10}{'huge pages':<52}{'on huge pages':>15}{'lookup ms':>11}{'update ms':>11}"
        f"{'with decay ms':>15}"
    )
    for run in runs:
        kib = run["anon_huge_pages_kib"]
        on_huge = "unknown" if kib is None else f"{kib / 1024:,.0f} MiB"
        print(
            f"{run['law']:<10}{run['huge_pages']:<52}{on_huge:>15}"
            f"{run['lookup_ms']:>11.2f}{run['update_ms']:>11.2f}"
            f"{run['decayed_update_ms']:>15.2f}"
        )
    for law in args.laws:
        off, on = (r for r in runs if r["law"] == law)
        print(
            f"{law}: huge pages speed lookups {off['lookup_ms'] / on['lookup_ms']:.2f}x and "
            f"updates {off['update_ms'] / on['update_ms']:.2f}x"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "config": vars(args), "runs": runs}, f, indent=2)
    return 0
