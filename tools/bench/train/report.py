"""The results: medians and ratios of the rounds, the targets, the printed table."""

from __future__ import annotations

import statistics
from typing import Any

from tools.machine import format_machine

# Medians of ours over plain Keras, and of ours over the compute bound.
TARGET_RATIO = {"fp32": 1.2, "bf16": 1.5}
TARGET_FRACTION_OF_BOUND = 0.85
TARGET_PIPELINE_RATIO = 20.0


def summarize_rounds(rounds: dict[str, list[float]], training_flops: int) -> dict[str, float]:
    """Medians of the rounds of `compare`, the ratio and the fractions of the compute bound.

    The ratio is the median of the per-round ratios (each round's two windows
    ran back to back, at about the same machine speed); the ratio of the two
    medians is kept too. The bound is the median matmul rate of the rounds
    divided by the training FLOP per sample; the shapes bound is the median
    of the rounds' `StepMatmuls` bounds (the step's products timed alone).
    """
    ours, plain = rounds["ours"], rounds["plain_keras"]
    bound = statistics.median(rounds["matmul_gflops"]) * 1e9 / training_flops
    shapes_bound = statistics.median(rounds["shapes_bound"])
    return {
        "ours_samples_per_s": statistics.median(ours),
        "plain_keras_samples_per_s": statistics.median(plain),
        "ratio_ours_over_plain": statistics.median(o / p for o, p in zip(ours, plain, strict=True)),
        "ratio_of_medians": statistics.median(ours) / statistics.median(plain),
        "compute_bound_samples_per_s": bound,
        "ours_fraction_of_bound": statistics.median(ours) / bound,
        "plain_keras_fraction_of_bound": statistics.median(plain) / bound,
        "shapes_bound_samples_per_s": shapes_bound,
        "ours_fraction_of_shapes_bound": statistics.median(ours) / shapes_bound,
    }


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the benchmark: its threshold, the measured value, met or not."""
    runs = results["precisions"]
    targets: dict[str, dict[str, Any]] = {}
    for precision, run in runs.items():
        for name, target, value in (
            ("ours_over_plain_keras", TARGET_RATIO.get(precision), run["ratio_ours_over_plain"]),
            ("ours_over_bound", TARGET_FRACTION_OF_BOUND, run["ours_fraction_of_bound"]),
        ):
            if target is not None:
                targets[f"{precision}_{name}"] = {
                    "target": target,
                    "value": value,
                    "met": value >= target,
                }
    # The pipeline must feed the fastest of our steps.
    fastest = max(run["ours_samples_per_s"] for run in runs.values())
    value = results["pipeline_samples_per_s"] / fastest
    targets["pipeline_over_fastest_step"] = {
        "target": TARGET_PIPELINE_RATIO,
        "value": value,
        "met": value >= TARGET_PIPELINE_RATIO,
    }
    return targets


def format_report(results: dict[str, Any]) -> str:
    """The summary table (throughputs, ratios, bound fractions, targets, profile)."""
    lines = [
        format_machine(results["machine"]),
        "samples/s: medians of the rounds; ratio: median of per-round ratios (ratio of "
        "medians in brackets); bound: median matmul rate of the rounds / FLOP per sample; "
        "shapes: the step's own products timed alone",
        f"{'precision':<10}{'ours/s':>9}{'keras/s':>9}{'ratio':>14}{'GFLOP/s':>9}{'bound/s':>11}"
        f"{'ours/bound':>12}{'keras/bound':>13}{'shapes/s':>10}{'ours/shapes':>13}",
    ]
    for precision, run in results["precisions"].items():
        matmul = results["matmul"][precision]
        ratio = f"{run['ratio_ours_over_plain']:.2f} ({run['ratio_of_medians']:.2f})"
        lines.append(
            f"{precision:<10}{run['ours_samples_per_s']:>9,.0f}"
            f"{run['plain_keras_samples_per_s']:>9,.0f}{ratio:>14}"
            f"{matmul['gflops_during_training']:>9.0f}"
            f"{matmul['compute_bound_samples_per_s']:>11,.0f}{run['ours_fraction_of_bound']:>12.0%}"
            f"{run['plain_keras_fraction_of_bound']:>13.0%}"
            f"{run['shapes_bound_samples_per_s']:>10,.0f}"
            f"{run['ours_fraction_of_shapes_bound']:>13.0%}"
        )
    lines.append(
        f"input pipeline alone: {results['pipeline_samples_per_s']:,.0f} samples/s; load "
        f"average {results['load_average_1min_start']:.1f} at start, "
        f"{results['load_average_1min_end']:.1f} at end (2 cores)"
    )
    for name, target in results["targets"].items():
        verdict = "MET" if target["met"] else "NOT MET"
        lines.append(f"target {name}: {target['value']:.2f} (>= {target['target']}) {verdict}")
    for precision, run in results["precisions"].items():
        if "shapes_ms" in run:
            lines.append(f"the step's products alone, {precision} (ms, median):")
            lines.extend(f"  {name:<34}{ms:8.2f}" for name, ms in run["shapes_ms"].items())
        if "profile" in run:
            lines.append(f"profile of our step, {precision} (ms, median):")
            lines.extend(f"  {name:<28}{ms:8.1f}" for name, ms in run["profile"]["part_ms"].items())
            trace = run["profile"].get("op_types") or {}
            for key in ("by_phase", "by_type"):
                lines.append(f"  thread time {key.replace('_', ' ')} (% of traced, ms/step):")
                lines.extend(
                    f"    {row['name']:<34}{row['percent']:6.1f}%{row['thread_ms_per_step']:9.1f}"
                    for row in trace.get(key, [])[:15]
                )
    return "\n".join(lines)
