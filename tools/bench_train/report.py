"""The results: medians and ratios of the rounds, the targets, the printed table."""

from __future__ import annotations

import statistics
from typing import Any

from tools.machine import format_machine

TARGET_FP32_RATIO = 1.3
TARGET_BF16_RATIO = 1.8
TARGET_PIPELINE_RATIO = 20.0


def summarize_rounds(rounds: dict[str, list[float]], training_flops: int) -> dict[str, float]:
    """Medians of the rounds of `compare`, the ratio and the fractions of the compute bound.

    The ratio is the median of the per-round ratios (each round's two windows
    ran back to back, at about the same machine speed); the ratio of the two
    medians is kept too. The bound is the median matmul rate of the rounds
    divided by the training FLOP per sample.
    """
    ours, plain = rounds["ours"], rounds["plain_keras"]
    bound = statistics.median(rounds["matmul_gflops"]) * 1e9 / training_flops
    return {
        "ours_samples_per_s": statistics.median(ours),
        "plain_keras_samples_per_s": statistics.median(plain),
        "ratio_ours_over_plain": statistics.median(o / p for o, p in zip(ours, plain, strict=True)),
        "ratio_of_medians": statistics.median(ours) / statistics.median(plain),
        "compute_bound_samples_per_s": bound,
        "ours_fraction_of_bound": statistics.median(ours) / bound,
        "plain_keras_fraction_of_bound": statistics.median(plain) / bound,
    }


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the benchmark: its threshold, the measured value, met or not."""
    runs = results["precisions"]
    targets: dict[str, dict[str, Any]] = {}
    for precision, target in (("fp32", TARGET_FP32_RATIO), ("bf16", TARGET_BF16_RATIO)):
        if precision in runs:
            value = runs[precision]["ratio_ours_over_plain"]
            targets[f"{precision}_ours_over_plain_keras"] = {
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
        "medians in brackets); bound: median matmul rate of the rounds / FLOP per sample",
        f"{'precision':<10}{'ours/s':>9}{'keras/s':>9}{'ratio':>14}{'GFLOP/s':>9}{'bound/s':>11}"
        f"{'ours/bound':>12}{'keras/bound':>13}",
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
