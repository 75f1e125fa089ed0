"""DLLogger-style results log: JSON lines, console lines on rank 0, TensorBoard scalars.

Every line of the log file is one JSON object::

    {"timestamp": 1795758435.9, "type": "LOG", "step": 1000, "data": {"loss": 0.13}}

- ``type`` is ``"METADATA"`` (unit and format of a metric, ``step`` is
  ``"PARAMETER"``), ``"LOG"`` (parameters with ``step`` ``"PARAMETER"``, or
  metrics at an integer step or a ``[epoch, iteration]`` list) or
  ``"RESULT"`` (the final result block, ``step`` is ``"RESULT"``).
- Only rank 0 writes the file, the console and TensorBoard; other ranks'
  loggers accept the same calls and do nothing, so callers need no rank checks.
- On a terminal, a one-line status (a progress bar) can be redrawn in place
  under the console lines (`status`); it is cleared before every line and
  never reaches the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

ENTRY_TYPES = ("METADATA", "LOG", "RESULT")
PARAMETER_STEP = "PARAMETER"
RESULT_STEP = "RESULT"
Step = int | tuple[int, ...] | str

# Metrics the training loop and the benchmarks report: name -> (unit, format).
STANDARD_METRICS: dict[str, tuple[str | None, str]] = {
    "loss": (None, ":.5f"),
    "learning_rate": (None, ":.6g"),
    "samples_per_second": ("samples/s", ":.1f"),
    "step_time_ms": ("ms", ":.3f"),
    "throughput": ("samples/s", ":.1f"),
    "mean_step_time_ms": ("ms", ":.3f"),
    "auc": (None, ":.6f"),
    "best_auc": (None, ":.6f"),
    "validation_loss": (None, ":.5f"),
    "mean_latency_ms": ("ms", ":.3f"),
    "p50_latency_ms": ("ms", ":.3f"),
    "p90_latency_ms": ("ms", ":.3f"),
    "p95_latency_ms": ("ms", ":.3f"),
    "p99_latency_ms": ("ms", ":.3f"),
    # Progress of evaluations and of the inference benchmark (models.training.progress).
    "eval_samples_per_second": ("samples/s", ":.1f"),
    "eval_eta_s": ("s", ":.0f"),
    "inference_samples_per_second": ("samples/s", ":.1f"),
    "inference_eta_s": ("s", ":.0f"),
}


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One line of a results log, as read back by :func:`read_results_log`."""

    timestamp: float
    type: str
    step: Step
    data: dict[str, Any]


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, TensorFlow eager tensors
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "tolist"):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable: {value!r}")


def _check_step(step: Any) -> Step:
    if isinstance(step, bool):
        raise ValueError(f"step must be an int, a tuple of ints, or a string, got {step!r}")
    if isinstance(step, int | str):
        return step
    if (
        isinstance(step, tuple | list)
        and step
        and all(isinstance(s, int) and not isinstance(s, bool) for s in step)
    ):
        return tuple(step)
    raise ValueError(f"step must be an int, a tuple of ints, or a string, got {step!r}")


def format_value(value: Any, fmt: str | None = None) -> str:
    """``value`` with a DLLogger-style format such as ``":.4f"``; text as is."""
    if _is_number(value):
        if fmt is not None and math.isfinite(value):
            return ("{" + fmt + "}").format(value)
        return str(value) if isinstance(value, numbers.Integral) else f"{value:.6g}"
    return str(value)


def _is_number(value: Any) -> bool:
    # numbers.Real covers numpy scalars (np.float32, np.int64) as well.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class ResultsLogger:
    """Writes the results log of one run.

    Args:
        path: JSON-lines file; None for console (and TensorBoard) only.
        rank: this process's rank; only rank 0 outputs anything.
        tensorboard_dir: when given, numeric metrics logged at integer steps
            are also written as TensorBoard scalars there.
        stream: console stream.
        append: append to an existing file (a resumed run) instead of
            replacing it.
        clock: wall-clock source of the timestamps.

    Example:
        >>> with ResultsLogger("log.json") as log:
        ...     log.parameters({"batch_size": 65536})
        ...     log.log(1000, {"loss": 0.13, "samples_per_second": 1.2e6})
        ...     log.result({"throughput": 1.2e6, "auc": 0.8025})
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        rank: int = 0,
        tensorboard_dir: str | os.PathLike | None = None,
        stream: TextIO | None = None,
        append: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = rank == 0
        self._stream = stream if stream is not None else sys.stdout
        self._clock = clock
        self._formats: dict[str, str | None] = {}
        self._units: dict[str, str | None] = {}
        self._file: TextIO | None = None
        self._summary_writer = None
        self._last_int_step = 0
        self._status_width = 0  # characters of the status line shown, 0 when none
        if not self.enabled:
            return
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Line buffered: a crashed run keeps every line logged before the crash.
            self._file = open(path, "a" if append else "w", buffering=1)  # noqa: SIM115
        if tensorboard_dir is not None:
            import tensorflow as tf  # only runs that want TensorBoard pay for the import

            self._summary_writer = tf.summary.create_file_writer(os.fspath(tensorboard_dir))
        for name, (unit, fmt) in STANDARD_METRICS.items():
            self.metadata(name, unit=unit, format=fmt)

    def __enter__(self) -> ResultsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, entry_type: str, step: Step, data: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        line = {"timestamp": self._clock(), "type": entry_type, "step": step, "data": dict(data)}
        self._file.write(json.dumps(line, default=_json_default) + "\n")

    def metadata(self, metric: str, unit: str | None = None, format: str | None = None) -> None:
        """Declares the unit and console format of ``metric`` (e.g. ``":.4f"``)."""
        if not self.enabled:
            return
        self._units[metric] = unit
        self._formats[metric] = format
        self._write("METADATA", PARAMETER_STEP, {"metric": metric, "unit": unit, "format": format})

    def parameters(self, params: Mapping[str, Any]) -> None:
        """Logs the run configuration once (step ``"PARAMETER"``)."""
        if not self.enabled:
            return
        self._write("LOG", PARAMETER_STEP, params)
        if self._summary_writer is not None:
            text = json.dumps(dict(params), default=_json_default, indent=1)
            self._summary("parameters", f"```\n{text}\n```", step=0, plugin="text")

    @property
    def interactive(self) -> bool:
        """True on rank 0 when the console is a terminal, where `status` draws."""
        isatty = getattr(self._stream, "isatty", None)
        return self.enabled and isatty is not None and bool(isatty())

    def log(
        self,
        step: int | tuple[int, ...],
        data: Mapping[str, Any],
        console: bool = True,
        tensorboard: bool = True,
    ) -> None:
        """Logs metrics at ``step``.

        Args:
            step: an integer step or a tuple such as ``(epoch, iteration)``.
            data: metric name -> value.
            console: also print one console line.
            tensorboard: also write the numeric values as TensorBoard scalars
                (integer steps only); False for figures that are not a series
                over steps, such as the progress of an evaluation.
        """
        if not self.enabled:
            return
        step = _check_step(step)
        if isinstance(step, str):
            raise ValueError(f"metrics are logged at an integer or tuple step, got {step!r}")
        self._write("LOG", step, data)
        if console:
            shown = " ".join(map(str, step)) if isinstance(step, tuple) else str(step)
            fields = [f"{k}: {self._format(k, v)}" for k, v in data.items()]
            self._print(" | ".join([f"step {shown}", *fields]))
        if isinstance(step, int):
            self._last_int_step = step
            if tensorboard:
                self._scalars(step, data)

    def status(self, text: str) -> None:
        """Redraws the one-line status with ``text`` on a terminal; elsewhere does nothing."""
        if not self.interactive:
            return
        # Pad over what is left of a longer previous status.
        self._stream.write("\r" + text.ljust(self._status_width))
        self._stream.flush()
        self._status_width = len(text)

    def clear_status(self) -> None:
        """Removes the status line (if one is shown), leaving the cursor at its start."""
        if self._status_width:
            self._stream.write("\r" + " " * self._status_width + "\r")
            self._stream.flush()
            self._status_width = 0

    def _print(self, text: str) -> None:
        self.clear_status()
        print(text, file=self._stream, flush=True)

    def result(self, data: Mapping[str, Any]) -> None:
        """Logs the final results (step ``"RESULT"``) and prints them as a block."""
        if not self.enabled:
            return
        self._write("RESULT", RESULT_STEP, data)
        self._print(self.format_result_block(data))
        self._scalars(self._last_int_step, data, prefix="result/")

    def format_result_block(self, data: Mapping[str, Any]) -> str:
        """The result block printed by :meth:`result`."""
        width = max((len(k) for k in data), default=0)
        rows = []
        for key, value in data.items():
            unit = self._units.get(key)
            text = self._format(key, value) + (f" {unit}" if unit else "")
            rows.append(f"  {key:<{width}}  {text}")
        rule = "=" * max(24, width + 20)
        return "\n".join([rule, "RESULTS", *rows, rule])

    def _format(self, key: str, value: Any) -> str:
        return format_value(value, self._formats.get(key))

    def _scalars(self, step: int, data: Mapping[str, Any], prefix: str = "") -> None:
        if self._summary_writer is None:
            return
        for key, value in data.items():
            if _is_number(value):
                self._summary(prefix + key, float(value), step=step, plugin="scalars")

    def _summary(self, tag: str, value: Any, step: int, plugin: str) -> None:
        # tf.summary.scalar/text live in the tensorboard package, which
        # tensorflow-cpu does not install; tf.summary.write with the plugin
        # name in the metadata writes the same events with TensorFlow alone.
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
        )
        with self._summary_writer.as_default():
            tf.summary.write(tag, tf.constant(value), step=step, metadata=metadata)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self._summary_writer is not None:
            self._summary_writer.flush()

    def close(self) -> None:
        self.clear_status()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._summary_writer is not None:
            self._summary_writer.close()
            self._summary_writer = None


def read_results_log(path: str | os.PathLike) -> list[LogEntry]:
    """Parses a results log; errors name the file and line.

    Raises:
        ValueError: a line is not a JSON object with ``timestamp``, ``type``
            (one of :data:`ENTRY_TYPES`), ``step`` and ``data``.
    """
    entries = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{where}: not a JSON line ({err})") from err
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in ("timestamp", "type", "step", "data") if k not in obj]
            if missing:
                raise ValueError(f"{where}: missing keys {missing}")
            if obj["type"] not in ENTRY_TYPES:
                raise ValueError(f"{where}: type {obj['type']!r} not one of {ENTRY_TYPES}")
            if not isinstance(obj["data"], dict):
                raise ValueError(f"{where}: data must be an object, got {obj['data']!r}")
            try:
                step = _check_step(obj["step"])
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from err
            entries.append(LogEntry(float(obj["timestamp"]), obj["type"], step, obj["data"]))
    return entries
