"""Summary of a results log, or of a step timing summary (``--use_performance``).

The timing itself (`StepTimer`, `summarize`) is `models.training.timing`.

Command line::

    python -m tools.record_time dlrm_tf_log.json     # a results log
    python -m tools.record_time step_times.json      # a summary StepTimer wrote
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.training.results_log import format_value, read_results_log
from models.training.timing import PERCENTILES, TimingSummary


def _metric_rows(values: dict[str, list[float]]) -> list[str]:
    rows = []
    width = max(len(k) for k in values)
    for key, series in values.items():
        array = np.asarray(series, dtype=np.float64)
        fields = [
            f"n={array.size}",
            f"mean={format_value(float(array.mean()))}",
            f"min={format_value(float(array.min()))}",
            f"max={format_value(float(array.max()))}",
            f"last={format_value(float(array[-1]))}",
        ]
        if key.endswith("_ms"):
            for q, v in zip(PERCENTILES, np.percentile(array, PERCENTILES), strict=True):
                fields.append(f"p{q}={format_value(float(v))}")
        rows.append(f"  {key:<{width}}  " + " ".join(fields))
    return rows


def describe_results_log(path: str | os.PathLike, results_only: bool = False) -> str:
    """A text summary of a results log: parameters, metric statistics, results.

    With `results_only`, just the result block(s).
    """
    entries = read_results_log(path)
    declared = {e.data.get("metric"): e.data for e in entries if e.type == "METADATA"}
    lines = [f"results log {path}: {len(entries)} entries"]
    if results_only:
        entries = [e for e in entries if e.type == "RESULT"]
    for entry in entries:
        if entry.type == "LOG" and entry.step == "PARAMETER":
            lines.append("parameters:")
            lines += [f"  {k} = {v}" for k, v in entry.data.items()]
    metrics: dict[str, list[float]] = {}
    steps = []
    for entry in entries:
        if entry.type == "LOG" and entry.step != "PARAMETER":
            steps.append(entry.step)
            for key, value in entry.data.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    metrics.setdefault(key, []).append(float(value))
    if steps and metrics:
        lines.append(f"metrics over {len(steps)} log lines, steps {steps[0]} .. {steps[-1]}:")
        lines += _metric_rows(metrics)
    for entry in entries:
        if entry.type == "RESULT":
            lines.append("result:")
            for key, value in entry.data.items():
                meta = declared.get(key, {})
                text = format_value(value, meta.get("format"))
                lines.append(f"  {key} = {text}" + (f" {meta['unit']}" if meta.get("unit") else ""))
    if not steps and not any(e.type == "RESULT" for e in entries):
        lines.append("no metrics and no result logged")
    return "\n".join(lines)


def describe(path: str | os.PathLike, results_only: bool = False) -> str:
    """Summary of a results log, or of a timing summary written by StepTimer."""
    text = Path(path).read_text()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None  # a JSON-lines file is not one JSON document
    fields = {f.name for f in dataclasses.fields(TimingSummary)}
    if isinstance(obj, dict) and fields <= set(obj):
        width = max(len(k) for k in fields)
        rows = [f"  {k:<{width}}  {format_value(obj[k])}" for k in obj if k in fields]
        return "\n".join([f"step timing summary {path}:", *rows])
    return describe_results_log(path, results_only)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.record_time",
        description="Print a summary of a results log or of a step timing summary JSON.",
    )
    parser.add_argument(
        "files", type=Path, nargs="+", help="results logs (JSON lines) or timing summaries"
    )
    parser.add_argument(
        "--results_only", action="store_true", help="print only the result blocks of results logs"
    )
    args = parser.parse_args(argv)
    try:
        print("\n".join(describe(f, args.results_only) for f in args.files))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
