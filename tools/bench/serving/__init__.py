"""Serving latency of an exported model's signatures: ids, raw rows, preprocessing alone.

    python -m tools.bench serving                      # the reference model, built here
    python -m tools.bench serving --model SAVED_MODEL --input_files LOG [--schema S.yaml]

Without ``--model`` the reference DLRM (``setup``: D = 128, MLPs 512-256-128 /
1024-1024-512-256-1, 26 Criteo tables capped at 200,000 rows, random
vocabularies) is exported with both signatures into a temporary directory,
and the requests are generated Criteo rows. With ``--model``, the requests
are the first accepted rows of ``--input_files`` (read as ``tools.predict``
reads them).
Each signature is then measured in a fresh process (``measure``): the model
loaded as a server loads it, ``--warmup`` untimed requests, then
``--requests`` timed requests per batch size, one after another. The report
gives per signature and batch size the p50/p90/p99 latency, p99/p50 and the
throughput (rows / mean latency), the CPU time of a request (all threads;
what it costs whatever else runs) and the time its threads waited for a core
held by another process (run-queue wait, from /proc schedstat: on a shared
machine the usual cause of a tail), and the raw path's cost: ``raw`` against
``ids`` at p50 and in CPU time, beside ``preprocess`` alone.
Every report starts with the machine (CPU model and flags, cores, load).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.bench.serving.measure import SIGNATURES

BATCH_SIZES = (1, 64, 512, 2048)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", help="a SavedModel with serve_raw (default: the reference)")
    parser.add_argument("--input_files", nargs="+", help="--model: raw logs to take rows from")
    parser.add_argument("--schema", help="--model: the logs' schema (as tools.predict)")
    parser.add_argument("--unlabeled", action="store_true", help="--model: Criteo, no label")
    parser.add_argument("--batch_sizes", type=_ints, default=BATCH_SIZES)
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per point")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per point")
    parser.add_argument("--distinct", type=int, default=8, help="different batches cycled")
    parser.add_argument(
        "--signatures", default="ids,raw,preprocess", help=f"any of {','.join(SIGNATURES)}"
    )
    parser.add_argument("--intra_op", type=int, help="TensorFlow intra-op threads (children)")
    parser.add_argument("--inter_op", type=int, help="TensorFlow inter-op threads (children)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", choices=sorted(SIGNATURES), help=argparse.SUPPRESS)
    parser.add_argument("--requests_file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.signatures.split(",")) - set(SIGNATURES))
    if unknown:
        parser.error(f"--signatures: unknown {unknown}; known: {sorted(SIGNATURES)}")
    if min(args.batch_sizes) < 1 or args.requests < 1 or args.warmup < 0 or args.distinct < 1:
        parser.error("batch sizes, --requests and --distinct must be >= 1, --warmup >= 0")
    if not args.child and bool(args.model) != bool(args.input_files):
        parser.error("--model and --input_files go together (neither: the reference model)")
    return args


def _rows_from_files(args: argparse.Namespace, rows: int):
    """The first ``rows`` accepted rows of the logs, as tools.predict reads them."""
    import numpy as np

    from preproc.rejects import RejectLog
    from preproc.user_schema import read_schema
    from tools.predict import RowReader, _raw_inputs, read_rows

    schema = read_schema(args.schema) if args.schema else None
    reader = RowReader.for_model(_raw_inputs(args.model), schema, not args.unlabeled)
    row_format = reader.row_format
    header = row_format.schema is not None and row_format.schema.header
    with tempfile.TemporaryDirectory() as tmp:
        rejects = RejectLog(f"{tmp}/rejects.tsv", False, row_format.reasons, header)
        fields: list[list[bytes]] = []
        for block in read_rows(args.input_files, reader, rejects):
            fields += block.fields
            if len(fields) >= rows:
                break
        rejects.close(False)
    if not fields:
        raise SystemExit(f"--input_files: no accepted row in {args.input_files}")
    out = np.empty((len(fields), len(reader.inputs)), object)
    out[:] = fields
    return out


def _child(args: argparse.Namespace) -> int:
    from models.device import apply_threading
    from tools.bench.serving.measure import measure

    apply_threading(args.inter_op, args.intra_op)
    results = measure(
        args.model,
        args.child,
        args.requests_file,
        args.batch_sizes,
        args.requests,
        args.warmup,
        args.distinct,
    )
    Path(args.out).write_text(json.dumps(results), encoding="utf-8")
    return 0


def _child_argv(args: argparse.Namespace, signature: str, requests_file: Path, out: Path) -> list:
    argv = [
        sys.executable, "-m", "tools.bench", "serving", "--child", signature,
        "--model", args.model, "--requests_file", str(requests_file), "--out", str(out),
        "--batch_sizes", ",".join(map(str, args.batch_sizes)), "--requests", str(args.requests),
        "--warmup", str(args.warmup), "--distinct", str(args.distinct),
    ]  # fmt: skip
    for flag in ("intra_op", "inter_op"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    return argv


def format_report(results: dict[str, Any]) -> str:
    """The latency table, then the raw path's cost against the id input's."""
    lines = [
        f"{'signature':<11}{'batch':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}"
        f"{'p99/p50':>9}{'rows/s':>12}{'CPU p50':>9}{'CPU p99':>9}{'wait p99':>9}"
    ]
    for signature, points in results["signatures"].items():
        for batch, s in points.items():
            lines.append(
                f"{signature:<11}{batch:>6}{s['p50_ms']:>10.3f}{s['p90_ms']:>10.3f}"
                f"{s['p99_ms']:>10.3f}{s['p99_ms'] / s['p50_ms']:>9.2f}"
                f"{s['samples_per_second']:>12,.0f}{s['cpu_p50_ms']:>9.2f}{s['cpu_p99_ms']:>9.2f}"
                f"{s['runqueue_wait_p99_ms']:>9.2f}"
            )
    ids, raw = results["signatures"].get("ids"), results["signatures"].get("raw")
    if ids and raw:
        lines.append(
            "raw path cost, (raw - ids) / ids at p50 and in CPU time; preprocess alone / ids:"
        )
        pre = results["signatures"].get("preprocess", {})
        for batch in ids:
            wall = raw[batch]["p50_ms"] / ids[batch]["p50_ms"] - 1
            cpu = raw[batch]["cpu_p50_ms"] / ids[batch]["cpu_p50_ms"] - 1
            alone = ""
            if batch in pre:
                alone = (
                    f"; preprocess {pre[batch]['p50_ms'] / ids[batch]['p50_ms']:.3f} p50, "
                    f"{pre[batch]['cpu_p50_ms'] / ids[batch]['cpu_p50_ms']:.3f} CPU"
                )
            lines.append(f"  batch {batch:>5}: {wall:+.3f} p50, {cpu:+.3f} CPU{alone}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import numpy as np

    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.child:
        return _child(args)
    from tools.bench.serving import setup
    from tools.machine import describe_machine, format_machine

    machine = describe_machine()
    print(format_machine(machine))
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        work = Path(tmp)
        rows = max(args.batch_sizes) * args.distinct
        if args.model is None:
            args.model = str(work / "model")
            spec = setup.export_reference_model(Path(args.model), args.seed)
            print(f"reference model exported to {args.model} (temporary)", flush=True)
            requests = setup.raw_requests(spec, rows, args.seed + 1)
        else:
            requests = _rows_from_files(args, rows)
        requests_file = work / "requests.npy"
        np.save(requests_file, requests, allow_pickle=True)
        results: dict[str, Any] = {"machine": machine, "config": vars(args), "signatures": {}}
        for signature in args.signatures.split(","):
            out = work / f"{signature}.json"
            print(f"--- {signature}: a fresh process", flush=True)
            subprocess.run(_child_argv(args, signature, requests_file, out), check=True)
            results["signatures"][signature] = json.loads(out.read_text())
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0
