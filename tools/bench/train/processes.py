"""``--processes N``: the benchmark in N fresh processes, one after another.

The rounds of one process measure how steady the step is inside that process.
They cannot show that a process may keep one speed for its whole life and the
next process another (where memory and threads happened to land), so this runs
the same command N times as separate processes and reports, per precision, the
spread over processes of each process's median next to the spread of the rounds
inside the processes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.bench.train.report import TARGET_RATIO

REPO_ROOT = Path(__file__).resolve().parents[3]
# Flags of the parent only: each child writes its own JSON file and runs once.
_PARENT_FLAGS = ("--processes", "--json")
# Throughput that holds in every process: the slowest within 15% of the fastest.
TARGET_SLOWEST_OVER_FASTEST = 0.85


class ChildFailedError(RuntimeError):
    """A child benchmark process ended with a non-zero status."""


def child_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--processes`` and ``--json`` (``--flag value`` or ``--flag=value``)."""
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg in _PARENT_FLAGS:
            skip_value = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in _PARENT_FLAGS)):
            kept.append(arg)
    return kept


def run_processes(
    argv: Sequence[str], processes: int, directory: Path, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Runs ``python -m tools.bench train ARGV`` ``processes`` times; returns their results.

    Children run one after another (never two at once: they would share the
    cores) with this interpreter, from the repository root; their output is
    this process's.

    Raises:
        ChildFailedError: a child exited with a non-zero status.
    """
    runs = []
    for index in range(processes):
        out = directory / f"process_{index}.json"
        command = [sys.executable, "-m", "tools.bench", "train", *child_argv(argv), f"--json={out}"]
        log(f"--- process {index + 1} of {processes}: {' '.join(command[1:])}")
        sys.stdout.flush()  # the child writes to the same stdout
        done = subprocess.run(command, cwd=REPO_ROOT, check=False)
        if done.returncode != 0:
            status = done.returncode
            raise ChildFailedError(f"process {index + 1} of {processes} exited with {status}")
        runs.append(json.loads(out.read_text(encoding="utf-8")))
    return runs


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "per_process": values,
    }


def summarize_processes(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per precision: min / median / max over processes of each child's figures.

    ``ours`` and ``plain_keras`` spread the children's medians of their rounds
    (samples/s); ``ratio_of_medians`` is the median of ours over the median of
    plain Keras across processes; ``in_process_ratio`` spreads each child's own
    ratio (median of its per-round ratios); ``rounds_max_over_min`` is, per
    child, its fastest round over its slowest (1.0 = steady inside the process);
    ``fraction_of_bound`` and ``fraction_of_shapes_bound`` spread each child's
    median over its bounds. ``targets``: the slowest process within 15% of the
    fastest, and the ratio of medians at least ``TARGET_RATIO``.
    """
    summary: dict[str, dict[str, Any]] = {}
    for precision in runs[0]["precisions"]:
        children = [run["precisions"][precision] for run in runs]
        ours = [c["ours_samples_per_s"] for c in children]
        plain = [c["plain_keras_samples_per_s"] for c in children]
        summary[precision] = {
            "ours": _spread(ours),
            "plain_keras": _spread(plain),
            "ratio_of_medians": statistics.median(ours) / statistics.median(plain),
            "in_process_ratio": _spread([c["ratio_ours_over_plain"] for c in children]),
            "rounds_max_over_min": {
                name: [max(c[f"{name}_rounds"]) / min(c[f"{name}_rounds"]) for c in children]
                for name in ("ours", "plain_keras")
            },
        }
        for key in ("fraction_of_bound", "fraction_of_shapes_bound"):
            if all(f"ours_{key}" in c for c in children):
                summary[precision][key] = _spread([c[f"ours_{key}"] for c in children])
        summary[precision]["targets"] = _targets(precision, summary[precision])
    return summary


def _targets(precision: str, entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    slowest = entry["ours"]["min"] / entry["ours"]["max"]
    targets = {"slowest_over_fastest": {"target": TARGET_SLOWEST_OVER_FASTEST, "value": slowest}}
    if precision in TARGET_RATIO:
        targets["ratio_of_medians"] = {
            "target": TARGET_RATIO[precision],
            "value": entry["ratio_of_medians"],
        }
    for target in targets.values():
        target["met"] = target["value"] >= target["target"]
    return targets


def format_processes(summary: dict[str, dict[str, Any]], processes: int) -> str:
    """The table over processes, with the in-process figures beside it."""
    lines = [
        f"over {processes} fresh processes (each figure: one process's median of its rounds); "
        "rounds max/min: the fastest round of a process over its slowest, worst process",
        f"{'precision':<10}{'model':<13}{'min/s':>9}{'median/s':>10}{'max/s':>9}"
        f"{'max/min':>9}{'rounds max/min':>16}",
    ]
    for precision, entry in summary.items():
        for name, label in (("ours", "ours"), ("plain_keras", "plain Keras")):
            spread = entry[name]
            lines.append(
                f"{precision:<10}{label:<13}{spread['min']:>9,.0f}{spread['median']:>10,.0f}"
                f"{spread['max']:>9,.0f}{spread['max'] / spread['min']:>9.2f}"
                f"{max(entry['rounds_max_over_min'][name]):>16.2f}"
            )
        ratio = entry["in_process_ratio"]
        lines.append(
            f"{precision:<10}ours / plain Keras: ratio of medians {entry['ratio_of_medians']:.2f}; "
            f"in-process ratios min {ratio['min']:.2f}, median {ratio['median']:.2f}, "
            f"max {ratio['max']:.2f}"
        )
        for key, label in (("fraction_of_bound", "bound"), ("fraction_of_shapes_bound", "shapes")):
            if key in entry:
                spread = entry[key]
                lines.append(
                    f"{precision:<10}ours / {label}: min {spread['min']:.0%}, "
                    f"median {spread['median']:.0%}, max {spread['max']:.0%}"
                )
        for name, target in entry["targets"].items():
            verdict = "MET" if target["met"] else "NOT MET"
            lines.append(
                f"{precision:<10}target {name}: {target['value']:.2f} "
                f"(>= {target['target']}) {verdict}"
            )
    return "\n".join(lines)
