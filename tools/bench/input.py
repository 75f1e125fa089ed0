"""Throughput of the input pipelines alone (no model).

Writes a binary dataset of ``--rows`` rows with numpy into a temporary
directory (26 tables with Criteo-like cardinalities, power-law ids), then
times one pass over it with ``BinaryDataset`` in file order (TensorFlow
ops), in shuffled batch order (``os.preadv`` in ``tf.numpy_function``) and
with ``read_batch`` alone in one Python thread, and one pass of
``SyntheticDataset`` (power-law and constant) for each batch size, and
prints samples/s against the target: 20x what a train step consumes
(``tools.bench.train`` FP32 at batch 4096, ~23k samples/s, so >= 460k).

The dataset has just been written, so its files are in the page cache: this
measures the pipeline (reads, conversions, tf.data), not the disk.

    python -m tools.bench input                       # 3M rows, batches 4096 and 65536
    python -m tools.bench input --rows 500000 --batch_sizes 4096 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from models.data import feature_spec as fs
from models.data.binary import BinaryDataset
from models.data.criteo import BENCH_CARDINALITIES
from models.data.synthetic import SyntheticDataset
from models.data.writer import SplitArrays, write_metadata, write_split
from tools.machine import describe_machine, format_machine

TARGET_SAMPLES_PER_SECOND = 460_000
_WRITE_CHUNK_ROWS = 262_144


def write_bench_dataset(root: Path, rows: int, cardinalities: Sequence[int], seed: int) -> None:
    """Writes a ``train`` split of ``rows`` synthetic rows, chunk by chunk."""
    chunks = math.ceil(rows / _WRITE_CHUNK_ROWS)
    generator = SyntheticDataset(_WRITE_CHUNK_ROWS, chunks, cardinalities, seed=seed)
    dtypes = [fs.categorical_dtype(n) for n in cardinalities]
    for chunk in range(chunks):
        numerical, categorical, labels = generator.global_batch(chunk)
        keep = min(_WRITE_CHUNK_ROWS, rows - chunk * _WRITE_CHUNK_ROWS)
        arrays = SplitArrays(labels[:keep, 0], numerical[:keep], categorical[:keep])
        write_split(root, "train", arrays, dtypes, append=chunk > 0)
    write_metadata(root, cardinalities, numerical.shape[1], {"train": rows})


def time_dataset(dataset: tf.data.Dataset) -> tuple[int, int, float, float]:
    """Iterates ``dataset`` once.

    Returns:
        (batches, local samples, seconds to the first batch, seconds of the
        others); the first batch carries the one-off start-up (tf.data
        instantiates and optimises the graph functions then).
    """
    batches = samples = 0
    start = time.perf_counter()
    iterator = iter(dataset)
    first = next(iterator, None)
    started = time.perf_counter()
    for _, labels in iterator:
        batches += 1
        samples += int(labels.shape[0])
    batches += first is not None
    return batches, samples, started - start, time.perf_counter() - started


def time_numpy(dataset: BinaryDataset) -> tuple[int, int, float, float]:
    """Reads every batch with ``read_batch`` in this thread (no tf.data)."""
    samples = 0
    start = time.perf_counter()
    dataset.read_batch(0)
    started = time.perf_counter()
    for index in range(1, len(dataset)):
        samples += len(dataset.read_batch(index)[2])
    return len(dataset), samples, started - start, time.perf_counter() - started


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench input", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows of the binary dataset")
    parser.add_argument(
        "--batch_sizes",
        default="4096,65536",
        help="comma-separated global batch sizes",
    )
    parser.add_argument("--world_size", type=int, default=1, help="ranks the batch is sliced for")
    parser.add_argument("--parallel_batches", type=int, default=2, help="batches read concurrently")
    parser.add_argument("--work_dir", default=None, help="where to write the dataset (temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the machine and the rows to this file")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        parser.error(f"--batch_sizes must be comma-separated ints, got {args.batch_sizes!r}")
    if args.rows < 1 or min(args.batch_sizes) < 1 or args.world_size < 1:
        parser.error("--rows, --batch_sizes and --world_size must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    machine = describe_machine()
    print(format_machine(machine))
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="bench_input_") as directory:
        root = Path(directory)
        start = time.perf_counter()
        write_bench_dataset(root, args.rows, BENCH_CARDINALITIES, args.seed)
        written = sum(f.stat().st_size for f in (root / "train").iterdir())
        print(
            f"wrote {args.rows:,} rows x {len(BENCH_CARDINALITIES)} tables "
            f"({written / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s to {root}"
        )
        print(
            f"rank 0 of {args.world_size}; samples/s count this rank's labels x world size "
            f"(global samples); target >= {TARGET_SAMPLES_PER_SECOND:,}"
        )
        print("samples/s from the second batch on; 'first s' is the time to the first batch")
        print(
            f"{'pipeline':<28}{'batch':>8}{'batches':>9}{'first s':>9}{'seconds':>9}"
            f"{'samples/s':>13}  ok"
        )
        for batch in args.batch_sizes:
            common = {"rank": 0, "world_size": args.world_size}
            binary = BinaryDataset(
                root, "train", batch, parallel_batches=args.parallel_batches, **common
            )
            shuffled = BinaryDataset(
                root, "train", batch, parallel_batches=args.parallel_batches, shuffle=True,
                **common,
            )  # fmt: skip
            num_batches = max(1, args.rows // batch)
            runs = [
                ("binary, TF ops (in order)", lambda b=binary: time_dataset(b.as_dataset())),
                ("binary, preadv (shuffled)", lambda b=shuffled: time_dataset(b.as_dataset())),
                ("binary, read_batch alone", lambda b=binary: time_numpy(b)),
            ]
            for mode in ("powerlaw", "constant"):
                synthetic = SyntheticDataset(
                    batch,
                    num_batches,
                    BENCH_CARDINALITIES,
                    parallel_batches=args.parallel_batches,
                    seed=args.seed,
                    mode=mode,
                    **common,
                )
                runs.append(
                    (f"synthetic {mode}, tf.data", lambda s=synthetic: time_dataset(s.as_dataset()))
                )
            for name, run in runs:
                batches, samples, first, seconds = run()
                rate = samples * args.world_size / seconds if seconds else 0.0
                ok = "yes" if rate >= TARGET_SAMPLES_PER_SECOND else "NO"
                print(
                    f"{name:<28}{batch:>8}{batches:>9}{first:>9.2f}{seconds:>9.2f}"
                    f"{rate:>13,.0f}  {ok}"
                )
                rows.append(
                    {"pipeline": name, "batch_size": batch, "batches": batches,
                     "first_batch_seconds": first, "seconds": seconds, "samples_per_s": rate}
                )  # fmt: skip
            binary.close()
            shuffled.close()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "rows": args.rows, "runs": rows}, f, indent=2)
    return 0
