"""Plots of results logs: training loss, AUC and throughput against step.

Command line::

    python -m tools.plot_log LOG [LOG ...] -o run.png [--labels "1 rank" "2 ranks"]

Several logs are overlaid, one colour per run (e.g. 1 rank against 2, or two
models), so their curves compare directly. The log is the JSON-lines file of
``--log_path`` (``models/training/results_log.py``), read with its own reader.
Panels: training loss (and the evaluation's validation loss, dashed), AUC of
each evaluation, and the samples/s of each progress line (the first one
includes graph tracing, hence usually low).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from models.training.results_log import read_results_log

# (metric in the log, panel title, y-axis label); panels top to bottom.
PANELS = (
    ("loss", "training loss", "loss"),
    ("auc", "evaluation AUC", "AUC"),
    ("samples_per_second", "training throughput", "samples/s"),
)
# Drawn dashed on the panel of the first metric (same colour as its run).
COMPANIONS = {"loss": "validation_loss"}
PLOTTED = {m for m, _, _ in PANELS} | set(COMPANIONS.values())


@dataclasses.dataclass
class RunSeries:
    """The (step, value) points of each plotted metric of one log, in log order."""

    label: str
    points: dict[str, tuple[list[int], list[float]]]


def _default_label(path: Path, parameters: dict) -> str:
    label = f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
    world = parameters.get("world_size")
    if isinstance(world, int):
        label += f" ({world} rank{'s' if world != 1 else ''})"
    return label


def load_run(path: str | os.PathLike, label: str | None = None) -> RunSeries:
    """Reads the plotted metrics of a results log.

    Raises:
        ValueError: the file is not a results log, or it holds no plotted metric
            at an integer step (e.g. an evaluation-only or inference log).
    """
    path = Path(path)
    try:
        entries = read_results_log(path)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a results log (not UTF-8 text)") from None
    parameters: dict = {}
    points: dict[str, tuple[list[int], list[float]]] = {}
    for entry in entries:
        if entry.type == "LOG" and entry.step == "PARAMETER":
            parameters.update(entry.data)
        elif entry.type == "LOG" and isinstance(entry.step, int):
            for key, value in entry.data.items():
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                if key in PLOTTED and numeric:
                    steps, values = points.setdefault(key, ([], []))
                    steps.append(entry.step)
                    values.append(float(value))
    if not points:
        raise ValueError(
            f"{path}: no {', '.join(sorted(PLOTTED))} logged at any step "
            f"({len(entries)} entries): nothing to plot"
        )
    return RunSeries(label or _default_label(path, parameters), points)


def plot_runs(runs: Sequence[RunSeries], width_in: float = 10.0, height_in: float = 9.0) -> Figure:
    """One figure, a panel per metric, the runs overlaid in the same colour per run."""
    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    # Earlier runs drawn wider: identical curves (1 rank vs 2 ranks) stay both visible.
    widths = [max(1.0, 3.0 - 0.75 * i) for i in range(len(runs))]
    for ax, (metric, title, ylabel) in zip(axes, PANELS, strict=True):
        for run, colour, width in zip(runs, colours, widths, strict=True):
            style = {"color": colour, "linewidth": width}
            if metric in run.points:
                steps, values = run.points[metric]
                ax.plot(steps, values, marker=".", label=run.label, **style)
            companion = COMPANIONS.get(metric)
            if companion in run.points:
                steps, values = run.points[companion]
                label = f"{run.label}, validation"
                ax.plot(steps, values, linestyle="--", marker="x", label=label, **style)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {metric} in the log(s)", ha="center", transform=ax.transAxes)
    axes[-1].set_xlabel("step")
    return figure


def render(
    logs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    labels: Sequence[str] | None = None,
    width_in: float = 10.0,
    height_in: float = 9.0,
    dpi: int = 100,
) -> Figure:
    """Plots ``logs`` into the PNG ``output`` (``width_in * dpi`` x ``height_in * dpi``
    pixels) and returns the figure."""
    labels = labels or [None] * len(logs)
    runs = [load_run(log, label) for log, label in zip(logs, labels, strict=True)]
    figure = plot_runs(runs, width_in, height_in)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=dpi, format="png")
    return figure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.plot_log",
        description="Plot training loss, AUC and throughput against step from results logs.",
    )
    parser.add_argument("logs", type=Path, nargs="+", help="results logs (--log_path of a run)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument(
        "--labels", nargs="+", help="one legend label per log (default: file name and ranks)"
    )
    parser.add_argument("--width_in", type=float, default=10.0, help="figure width, inches")
    parser.add_argument("--height_in", type=float, default=9.0, help="figure height, inches")
    parser.add_argument("--dpi", type=int, default=100, help="pixels per inch of the PNG")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.logs):
        parser.error(f"--labels: {len(args.labels)} labels for {len(args.logs)} logs")
    if min(args.width_in, args.height_in) <= 0 or args.dpi <= 0:
        parser.error("--width_in, --height_in and --dpi must be positive")
    try:
        render(args.logs, args.output, args.labels, args.width_in, args.height_in, args.dpi)
    except OSError as err:
        print(f"error: {err.filename or args.output}: {err.strerror or err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(args.logs)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
