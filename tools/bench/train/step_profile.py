"""Where the time of our step goes: timed parts and a tf.profiler op-type summary."""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

from models.training.timing import StepTimer
from models.training.train_step import bce_with_logits
from tools.bench.train.setup import OursSetup


def interleaved_median_ms(parts: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall milliseconds of each part, the parts called in turn ``repeats`` times.

    Round-robin rather than one part after the other, so that a change of
    machine speed during the measurement affects every part alike.
    """
    for fn in parts.values():
        fn()  # traces the function
    timers = {name: StepTimer(samples_per_step=1) for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            timers[name].start()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn())
            timers[name].step_end()
    return {name: 1e3 * statistics.median(t.durations) for name, t in timers.items()}


def _phase(op_name: str) -> str:
    """Forward, backward or update, from the name scopes TensorFlow gives an op."""
    if "gradient_tape" in op_name or "gradients" in op_name.lower():
        return "backward"
    if any(key in op_name.lower() for key in ("optimizer", "sgd", "scatter", "apply_gradients")):
        return "update"
    return "forward"


def trace_op_types(step: Callable[[], Any], steps: int, trace_dir: str) -> dict[str, Any]:
    """Traces ``steps`` calls of ``step`` with tf.profiler; self time by op type and phase.

    Times are thread time (the sum over TensorFlow's threads), so they can
    exceed the wall time of a step on several cores. Uses TensorFlow's own
    trace converter (``framework_op_stats``, private API): an empty dict if
    it is missing.
    """
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError:
        return {}
    step()
    with tempfile.TemporaryDirectory(prefix="bench_train_trace_") as scratch:
        directory = trace_dir or scratch
        tf.profiler.experimental.start(directory)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        planes = sorted(Path(directory).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
        data, ok = plugin.xspace_to_tools_data([str(planes[-1])], "framework_op_stats", {})
    if not ok:
        return {}
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    by_type: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for row in table["rows"]:
        cells = dict(zip(columns, (c.get("v") for c in row["c"]), strict=True))
        if cells["type"] == "IDLE":
            continue
        us = float(cells["total_self_time"])
        by_type[cells["type"]] = by_type.get(cells["type"], 0.0) + us
        phase = _phase(str(cells["operation"]))
        by_phase[phase] = by_phase.get(phase, 0.0) + us
    total = sum(by_type.values()) or 1.0

    def rows(sums: dict[str, float]) -> list[dict[str, Any]]:
        ranked = sorted(sums.items(), key=lambda item: -item[1])
        return [
            {"name": k, "percent": 100 * v / total, "thread_ms_per_step": v / steps / 1e3}
            for k, v in ranked
        ]

    return {"by_type": rows(by_type), "by_phase": rows(by_phase)}


def _graph(fn: Callable) -> Callable:
    """`tf.function` without AutoGraph.

    These bodies have no Python control flow, and AutoGraph's source lookup of
    lambdas fails when the file is edited while a benchmark runs.
    """
    return tf.function(fn, autograph=False)


def profile_ours(
    setup: OursSetup, batches: tf.data.Dataset, repeats: int, trace_dir: str | None
) -> dict[str, Any]:
    """Milliseconds of the parts of our step, and an op-type trace summary.

    Parts are separate `tf.function`s on one batch: forward pieces, the
    interaction's forward + backward, forward + loss, forward + backward
    (gradients computed, not applied), each optimizer on those gradients,
    and the whole `TrainStep`; the backward time is a difference.
    ``trace_dir`` None skips the trace; "" traces into a temporary directory.
    """
    model, parallel = setup.model, setup.parallel
    features, labels = next(iter(batches))
    numerical, categorical = features["numerical"], features["categorical"]
    tables = range(model.num_tables)
    # The F vectors go to the interaction as pieces, as HybridParallel passes them.
    lookup = _graph(lambda ids: model.lookup(ids, tables))
    embeddings = lookup(categorical)
    bottom_mlp = _graph(lambda x: model.bottom_mlp(x))
    bottom = bottom_mlp(numerical)
    interaction = _graph(lambda b, e: model.interaction(b, list(e)))
    top_mlp = _graph(lambda x: model.top_mlp(x))
    interacted = interaction(bottom, embeddings)
    dense_vars, table_vars = model.dense_variables, parallel.owned_embedding_variables

    @_graph
    def interaction_backward(b, e):
        with tf.GradientTape() as tape:
            tape.watch([b, e])
            out = tf.cast(interaction(b, e), tf.float32)
        return tape.gradient(out, [b, e], output_gradients=tf.ones_like(out))

    @_graph
    def forward(num, cat, lab):
        return bce_with_logits(lab, parallel.forward(num, cat))

    @_graph
    def gradients(num, cat, lab):
        with tf.GradientTape() as tape:
            loss = bce_with_logits(lab, parallel.forward(num, cat))
        return tape.gradient(loss, dense_vars + table_vars)

    grads = gradients(numerical, categorical, labels)
    dense_grads, table_grads = grads[: len(dense_vars)], grads[len(dense_vars) :]

    @_graph
    def dense_update(g):
        setup.dense_optimizer.apply_gradients(zip(g, dense_vars, strict=True))
        return tf.constant(0)

    @_graph
    def table_update(g):
        setup.embedding_optimizer.apply_gradients(zip(g, table_vars, strict=True))
        return tf.constant(0)

    parts: dict[str, Callable[[], Any]] = {
        "lookup (F gathers)": lambda: lookup(categorical),
        "bottom MLP forward": lambda: bottom_mlp(numerical),
        "interaction forward": lambda: interaction(bottom, embeddings),
        "interaction fwd + bwd": lambda: interaction_backward(bottom, embeddings),
        "top MLP forward": lambda: top_mlp(interacted),
        "forward + loss": lambda: forward(numerical, categorical, labels),
        "forward + backward": lambda: gradients(numerical, categorical, labels),
        "dense optimizer (Keras SGD)": lambda: dense_update(dense_grads),
        "embedding optimizer (sparse)": lambda: table_update(table_grads),
        "whole train step": lambda: setup.step(features, labels),
    }
    ms = interleaved_median_ms(parts, repeats)
    ms["backward (difference)"] = ms["forward + backward"] - ms["forward + loss"]
    result: dict[str, Any] = {"part_ms": ms}
    if trace_dir is not None:
        result["op_types"] = trace_op_types(
            lambda: setup.step(features, labels).numpy(), repeats, trace_dir
        )
    return result
