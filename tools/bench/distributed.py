"""Hybrid-parallel benchmark: the real `dlrm_main.py` on 1 process and under horovodrun.

    python -m tools.bench distributed [--ranks 1,2] [--steps 40] [--bf16] [--json out.json]
        [--first_table_rows N] [--memory_limit_gb G]
        [--dense_allreduce grouped,top_first] [--repeats R]

Runs the benchmark configuration of the model issue (global batch 4096, D = 128, the
reference MLPs, 26 tables with the Criteo threshold-15 cardinalities capped at
200,000 rows, synthetic power-law data, SGD) for each world size, each run a separate
job, then prints from their JSON logs: table bytes held per rank, all-to-all bytes per
step and samples/s (warm-up steps excluded). With more ranks than cores (this 2-core
machine) no speed-up is expected: the figure shows the cost of the communication.

Row-wise sharding: ``--first_table_rows`` enlarges table 0 and
``--memory_limit_gb`` sets the per-rank budget (``--tf_mlu_memory_limit_gb``), so
that table 0 is split by rows over the ranks; the split tables' id and vector
exchange is printed as an upper bound (every id sent to another rank).

Overlap of the collectives with compute: ``--dense_allreduce`` names variants
of the dense-gradient allreduce (``tools.bench.overlap``: ``grouped`` is
``dlrm_main.py`` as it is, ``top_first`` reduces the top MLP's gradients
first); with several, and ``--repeats``, the multi-rank jobs alternate
between them (A, B, A, B, ...) so that both see the same load on a shared
machine, and the ratio of each pair is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from models.data.criteo import BENCH_CARDINALITIES
from tools.bench.overlap import VARIANTS
from tools.machine import describe_machine, format_machine

REPO_ROOT = Path(__file__).resolve().parents[2]


def command(
    world: int,
    steps: int,
    warmup: int,
    bf16: bool,
    log: Path,
    first_table_rows: int | None = None,
    memory_limit_gb: float | None = None,
    dense_allreduce: str = "grouped",
) -> list[str]:
    """The dlrm_main command line of one benchmark job.

    ``dense_allreduce`` other than ``grouped`` runs ``dlrm_main`` through
    ``tools.bench.overlap`` with that variant.
    """
    threads = max(1, (os.cpu_count() or 1) // world)
    cardinalities = list(BENCH_CARDINALITIES)
    if first_table_rows:
        cardinalities[0] = first_table_rows
    if dense_allreduce == "grouped":
        program = [str(REPO_ROOT / "dlrm_main.py")]
    else:
        program = ["-m", "tools.bench", "overlap", dense_allreduce]
    args = [
        sys.executable,
        *program,
        "--dataset_type=synthetic",
        "--synthetic_dataset_cardinalities=" + ",".join(map(str, cardinalities)),
        f"--synthetic_dataset_train_batches={steps}",
        "--batch_size=4096",
        "--valid_batch_size=4096",
        "--skip_eval",
        "--optimizer=sgd",
        "--learning_rate=0.1",
        "--warmup_steps=0",
        "--decay_start_step=0",
        "--decay_steps=0",
        f"--benchmark_warmup_steps={warmup}",
        f"--print_freq={steps}",
        "--device=cpu",
        f"--intra_op_parallelism={threads}",
        f"--log_path={log}",
    ]
    if bf16:
        args.append("--amp")
    if memory_limit_gb is not None:
        args.append(f"--tf_mlu_memory_limit_gb={memory_limit_gb}")
    if world > 1:
        horovodrun = Path(sys.executable).with_name("horovodrun")
        launcher = str(horovodrun) if horovodrun.exists() else "horovodrun"
        args = [launcher, "-np", str(world), "--gloo", *args, "--use_horovod"]
    return args


def summarise(log: Path) -> dict:
    """Placement, all-to-all volume and throughput from a run's JSON log."""
    parameters, result = {}, {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry["type"] == "LOG" and entry["step"] == "PARAMETER":
            parameters.update(entry["data"])
        elif entry["type"] == "RESULT":
            result.update(entry["data"])
    placement = parameters["placement"]
    return {
        "world_size": placement["world_size"],
        "bytes_per_rank": placement["bytes_per_rank"],
        "total_bytes": placement["total_bytes"],
        "alltoall_bytes_per_step": parameters["alltoall_bytes_per_step"],
        "split_tables": sorted(placement.get("split_tables", {})),
        "split_bytes_max": parameters.get("split_alltoall_bytes_per_step_max", 0),
        "samples_per_second": result["throughput"],
        "mean_step_time_ms": result["mean_step_time_ms"],
    }


def variant_ratios(rows: list[dict], variants: list[str]) -> list[str]:
    """Samples/s of each variant over the first one, pair by pair (jobs run alternated)."""
    lines = []
    for world in sorted({r["world_size"] for r in rows if r["world_size"] > 1}):
        runs = {
            v: [r for r in rows if (r["world_size"], r["dense_allreduce"]) == (world, v)]
            for v in variants
        }
        for variant in variants[1:]:
            ratios = [
                b["samples_per_second"] / a["samples_per_second"]
                for a, b in zip(runs[variants[0]], runs[variant], strict=True)
            ]
            lines.append(
                f"{world} ranks, {variant} / {variants[0]}: "
                + ", ".join(f"{r:.3f}" for r in ratios)
                + f" (median {statistics.median(ratios):.3f})"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench distributed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--ranks", default="1,2", help="world sizes to run, e.g. 1,2")
    parser.add_argument("--steps", type=int, default=40, help="training steps per job")
    parser.add_argument("--warmup_steps", type=int, default=10, help="steps not timed")
    parser.add_argument("--bf16", action="store_true", help="mixed_bfloat16 (--amp on CPU)")
    parser.add_argument("--json", default=None, help="write the machine and the rows to this file")
    parser.add_argument("--first_table_rows", type=int, help="rows of table 0 (default: capped)")
    parser.add_argument(
        "--memory_limit_gb", type=float, help="per-rank memory limit (forces row splits)"
    )
    parser.add_argument(
        "--dense_allreduce",
        default="grouped",
        help=f"variants of the dense-gradient allreduce to time, of {VARIANTS} "
        "(tools.bench.overlap); several alternate job by job",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="jobs per world size and variant (alternated)"
    )
    args = parser.parse_args(argv)
    worlds = [int(w) for w in args.ranks.split(",")]
    if any(w < 1 for w in worlds) or args.warmup_steps >= args.steps:
        parser.error("world sizes must be >= 1 and --warmup_steps < --steps")
    variants = args.dense_allreduce.split(",")
    if any(v not in VARIANTS for v in variants) or len(set(variants)) != len(variants):
        parser.error(f"--dense_allreduce takes distinct variants of {VARIANTS}, got {variants}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    # One process has no allreduce: its variants are the same program.
    jobs = [
        (world, variant)
        for world in worlds
        for _ in range(args.repeats)
        for variant in (variants if world > 1 else variants[:1])
    ]

    machine = describe_machine()  # the jobs run with this TensorFlow and environment
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as tmp:
        for k, (world, variant) in enumerate(jobs):
            log = Path(tmp) / f"job{k}_world{world}.json"
            cmd = command(
                world,
                args.steps,
                args.warmup_steps,
                args.bf16,
                log,
                args.first_table_rows,
                args.memory_limit_gb,
                variant,
            )
            done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
                print(f"error: the {world}-rank job failed (exit {done.returncode})")
                return 1
            rows.append({**summarise(log), "dense_allreduce": variant})

    mib = 2**20
    print(format_machine(machine))
    print(f"precision {'bf16' if args.bf16 else 'fp32'}, batch 4096, {args.steps} steps")
    print(
        "ranks  table MiB per rank          all-to-all MB/step  split tables  "
        "split MB/step (max)  samples/s  step ms  dense allreduce"
    )
    for row in rows:
        per_rank = ", ".join(f"{b / mib:.1f}" for b in row["bytes_per_rank"])
        split = ",".join(row["split_tables"]) or "-"
        print(
            f"{row['world_size']:>5}  {per_rank:<26}  "
            f"{row['alltoall_bytes_per_step'] / 1e6:>18.1f}  {split:>12}  "
            f"{row['split_bytes_max'] / 1e6:>19.1f}  "
            f"{row['samples_per_second']:>9.0f}  {row['mean_step_time_ms']:>7.1f}  "
            f"{row['dense_allreduce'] if row['world_size'] > 1 else '-'}"
        )
    base = rows[0]["samples_per_second"]
    for row in rows[1:]:
        if row["world_size"] != rows[0]["world_size"]:
            print(
                f"{row['world_size']} ranks / {rows[0]['world_size']}: "
                f"{row['samples_per_second'] / base:.2f}x samples/s"
            )
    for line in variant_ratios(rows, variants):
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "bf16": args.bf16, "runs": rows}, f, indent=2)
    return 0
