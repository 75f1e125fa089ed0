"""One signature of one SavedModel, timed in this (fresh) process.

Loads the SavedModel, builds ``distinct`` different input batches per batch
size from the raw request rows (the id input through the model's own
``preprocess_raw``, untimed), runs ``warmup`` untimed requests, then times
``requests`` requests one after another: the signature call and the copy of
its outputs to numpy, as a server answers a request; for each, its wall time
and the CPU time of the process (all threads). The garbage collector is
off while timing (a collection in the middle of a request is a tail the model
does not cause).
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.training.timing import summarize

SIGNATURES = {"ids": "serving_default", "raw": "serve_raw", "preprocess": "preprocess_raw"}


def _batches(rows: np.ndarray, batch: int, distinct: int) -> list[np.ndarray]:
    """``distinct`` consecutive slices of ``batch`` rows, wrapping around the pool."""
    out = []
    for k in range(distinct):
        index = (np.arange(batch) + k * batch) % rows.shape[0]
        out.append(rows[index])
    return out


def _runqueue_wait_s() -> float:
    """Seconds this process's threads have waited on a run queue so far (0 if unknown)."""
    total = 0
    try:
        for task in os.scandir("/proc/self/task"):
            with open(f"{task.path}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[1])  # on-CPU ns, run-queue wait ns, slices
    except (OSError, IndexError, ValueError):
        return 0.0
    return total / 1e9


def measure(
    model: str,
    signature: str,
    requests_path: str,
    batch_sizes: Sequence[int],
    requests: int,
    warmup: int,
    distinct: int,
) -> dict[str, Any]:
    """Latency summary per batch size (``models.training.timing.summarize``)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model)
    info = json.loads((Path(model) / "dlrm_signature.json").read_text(encoding="utf-8"))
    keys = [c["input"] for c in info["raw_inputs"]["columns"]]
    rows = np.load(requests_path, allow_pickle=True)  # written by this benchmark's parent
    preprocess = loaded.signatures["preprocess_raw"]
    call = loaded.signatures[SIGNATURES[signature]]
    results = {}
    for batch in batch_sizes:
        inputs = []
        for block in _batches(rows, batch, distinct):
            columns = {key: tf.constant(block[:, j]) for j, key in enumerate(keys)}
            if signature == "ids":
                pre = preprocess(**columns)
                columns = {"numerical": pre["numerical"], "categorical": pre["categorical"]}
            inputs.append(columns)
        for i in range(warmup):
            [v.numpy() for v in call(**inputs[i % distinct]).values()]
        durations, cpu, waited = [], [], []
        gc.collect()
        gc.disable()
        try:
            for i in range(requests):
                wait_started = _runqueue_wait_s()
                cpu_started, started = time.process_time(), time.perf_counter()
                [v.numpy() for v in call(**inputs[i % distinct]).values()]
                durations.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                waited.append(_runqueue_wait_s() - wait_started)
        finally:
            gc.enable()
        point = summarize(durations, batch).as_dict()
        # CPU time of this process (all its threads): what a request costs, whatever else
        # the machine runs, unlike its latency. Run-queue wait: time this process's threads
        # were ready to run while other processes held the cores (Linux schedstat).
        for name, values in (("cpu", cpu), ("runqueue_wait", waited)):
            p50, p99 = np.percentile(np.array(values) * 1e3, [50, 99])
            point[f"{name}_p50_ms"], point[f"{name}_p99_ms"] = float(p50), float(p99)
        results[str(batch)] = point
    return results
