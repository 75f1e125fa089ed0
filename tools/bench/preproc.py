"""Benchmark ``python -m preproc`` against the same transform written plainly with pandas.

``python -m tools.bench preproc [--num_rows 2000000] [--work_dir DIR]`` generates
a Criteo-format dataset (cached in ``--work_dir``), then runs, each in its own
process with its peak resident memory (process tree) sampled:

- ours with 1 and 2 workers on all rows (per-core scaling);
- ours with 2 workers on a quarter of the rows (memory must not grow with input);
- pandas: ``read_csv`` of every file, per column ``value_counts`` -> vocabulary
  (descending count, ties by value) -> ``map``, numerical ``log(x + 3)``,
  the same split, an in-memory shuffle, binary files written.

It prints wall and CPU time, rows/s, the ratio to pandas and peak memory, and
extrapolates the Criteo 1TB time (4.37e9 rows) on 64 cores from the rows per
CPU-second of the 1-worker run, and the disk traffic it implies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import psutil

from models.data import feature_spec as fs
from models.data.writer import SplitArrays, write_split
from tools.machine import describe_machine, format_machine

CRITEO_1TB_ROWS = 4_373_472_329
# Disk traffic per Criteo row: ~297 B of TSV read, 2 x 135 B of pass-1 rows, 2 x ~93 B of
# pass-2 records (threshold-15 dtypes), ~93 B of split files.
IO_BYTES_PER_ROW = 297 + 2 * 135 + 3 * 93
THRESHOLD = 15


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker may exit meanwhile
            total += p.memory_info().rss
    return total


def measure(command: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak resident MiB of the process tree) of a command.

    CPU time (user + system of the process and its waited-for workers) is
    reported too because this machine is shared: wall time depends on the load.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handle = psutil.Process(proc.pid)
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(psutil.Error):
            peak = max(peak, _tree_rss(handle))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {status}")
    return seconds, usage.ru_utime + usage.ru_stime, peak / 2**20


def pandas_preprocess(inputs: list[str], output_dir: str, threshold: int) -> None:
    """The plain pandas version of the default transform (log3, fraction split, shuffle)."""
    import pandas as pd

    ints = [f"I{i}" for i in range(1, 14)]
    cats = [f"C{i}" for i in range(1, 27)]
    frames = [
        pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=["label", *ints, *cats],
            dtype=dict.fromkeys(cats, str),
        )
        for path in inputs
    ]
    df = pd.concat(frames, ignore_index=True)
    n = len(df)
    n_test = int(n * 0.1 + 0.5)
    x = df[ints].to_numpy(np.float64)
    numerical = np.where(np.isnan(x) | (x <= -3), 0.0, np.log(np.where(x > -3, x + 3, 1.0)))
    numerical = numerical.astype(np.float32).astype(np.float16)
    ids = {}
    for c in cats:
        counts = df[c].value_counts()
        counts = counts[counts >= threshold]
        order = sorted(counts.index, key=lambda v, counts=counts: (-counts[v], int(v, 16)))
        mapping = {v: i + 1 for i, v in enumerate(order)}
        ids[c] = df[c].map(mapping).fillna(0).to_numpy(np.int32)
    permutation = np.random.default_rng(0).permutation(n - n_test)
    cardinalities = [int(ids[c].max()) + 1 for c in cats]
    dtypes = [fs.categorical_dtype(c) for c in cardinalities]
    for split, rows in (("train", permutation), ("test", np.arange(n - n_test, n))):
        arrays = SplitArrays(df["label"].to_numpy(np.bool_)[rows], numerical[rows],
                             np.stack([ids[c][rows] for c in cats], axis=1))  # fmt: skip
        write_split(output_dir, split, arrays, dtypes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench preproc", description=__doc__)
    parser.add_argument("--num_rows", type=int, default=2_000_000)
    parser.add_argument("--num_days", type=int, default=4)
    parser.add_argument("--work_dir", default="/tmp/dlrm_bench_preproc")
    parser.add_argument(
        "--unit_mb",
        type=float,
        default=16.0,
        help="passed to preproc: units smaller than a quarter-size day file, so that "
        "per-unit buffers are full-size at both sizes",
    )
    parser.add_argument(
        "--shuffle_bucket_rows",
        type=int,
        default=250_000,
        help="passed to preproc: below both sizes, so the shuffle's memory cap applies to both",
    )
    parser.add_argument("--json", default=None, help="write the machine and the runs to this file")
    parser.add_argument("--pandas_only", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pandas_only:
        pandas_preprocess(args.pandas_only[1:], args.pandas_only[0], THRESHOLD)
        return 0

    py = sys.executable
    sizes = {"full": args.num_rows, "quarter": args.num_rows // 4}
    inputs = {}
    for name, rows in sizes.items():
        data = os.path.join(args.work_dir, f"data_{rows}")
        if not os.path.exists(os.path.join(data, "done")):
            shutil.rmtree(data, ignore_errors=True)
            subprocess.run(
                [py, "-m", "tools.generate_criteo", "--output_dir", data, "--num_rows", str(rows),
                 "--num_days", str(args.num_days), "--seed", "0"],
                check=True,
            )  # fmt: skip
            open(os.path.join(data, "done"), "w").close()
        inputs[name] = [os.path.join(data, f"day_{i}") for i in range(args.num_days)]

    def ours(name: str, workers: int) -> tuple[float, float]:
        out = os.path.join(args.work_dir, f"out_{name}_{workers}")
        shutil.rmtree(out, ignore_errors=True)
        command = [py, "-m", "preproc", "--input_files", *inputs[name], "--output_dir", out]
        command += ["--frequency_threshold", str(THRESHOLD), "--num_workers", str(workers)]
        command += ["--shuffle_bucket_rows", str(args.shuffle_bucket_rows)]
        command += ["--unit_mb", str(args.unit_mb)]
        result = measure(command)
        with open(os.path.join(out, fs.METADATA_FILE)) as f:
            assert json.load(f)["rows_written"] == sizes[name]
        shutil.rmtree(out)
        return result

    machine = describe_machine(with_tensorflow=False)  # preprocessing never loads TensorFlow
    results = {
        "ours, 1 worker": (sizes["full"], *ours("full", 1)),
        "ours, 2 workers": (sizes["full"], *ours("full", 2)),
        "ours, 2 workers, 1/4 rows": (sizes["quarter"], *ours("quarter", 2)),
    }
    out = os.path.join(args.work_dir, "out_pandas")
    shutil.rmtree(out, ignore_errors=True)
    results["pandas"] = (
        sizes["full"],
        *measure([py, "-m", "tools.bench", "preproc", "--pandas_only", out, *inputs["full"]]),
    )
    shutil.rmtree(out, ignore_errors=True)

    print(format_machine(machine))  # its load average is that before the runs
    header = f"{'run':28s} {'rows':>10s} {'wall s':>7s} {'CPU s':>7s} {'rows/s':>9s}"
    print(header + f" {'rows/CPU-s':>10s} {'peak MiB':>9s}")
    for key, (rows, wall, cpu, peak) in results.items():
        print(
            f"{key:28s} {rows:>10,d} {wall:>7.1f} {cpu:>7.1f} {rows / wall:>9,.0f} "
            f"{rows / cpu:>10,.0f} {peak:>9.0f}"
        )
    wall = {k: rows / w for k, (rows, w, _, _) in results.items()}
    per_cpu = {k: rows / c for k, (rows, _, c, _) in results.items()}
    one, two = wall["ours, 1 worker"], wall["ours, 2 workers"]
    print(
        f"ours (2 workers) / pandas: {two / wall['pandas']:.1f}x in rows/s, "
        f"ours / pandas per CPU-second: {per_cpu['ours, 1 worker'] / per_cpu['pandas']:.1f}x"
    )
    print(f"scaling 1 -> 2 workers: {two / one:.2f}x ({two / one / 2:.0%} parallel efficiency)")
    core_rate = per_cpu["ours, 1 worker"]  # steady state: no worker start-up in the figure
    minutes = CRITEO_1TB_ROWS / (64 * core_rate) / 60
    io_bytes = CRITEO_1TB_ROWS * IO_BYTES_PER_ROW
    print(
        f"Criteo 1TB ({CRITEO_1TB_ROWS:,} rows) on 64 cores: CPU-bound estimate {minutes:.0f} min "
        f"at {core_rate:,.0f} rows per CPU-second; it moves about {io_bytes / 1e12:.1f} TB "
        f"({IO_BYTES_PER_ROW} bytes/row: TSV read, pass-1 rows written and read, pass-2 "
        f"records written and read, split files written), i.e. "
        f"{io_bytes / 2e9 / 60:.0f} min at 2 GB/s, {io_bytes / 1e9 / 60:.0f} min at 1 GB/s"
    )
    if args.json:
        runs = {
            key: {"rows": rows, "wall_s": wall, "cpu_s": cpu, "peak_mib": peak}
            for key, (rows, wall, cpu, peak) in results.items()
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "runs": runs}, f, indent=2)
    return 0
