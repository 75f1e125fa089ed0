"""The results-log and timing-summary command (`python -m tools.record_time`)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.training.results_log import ResultsLogger
from models.training.timing import StepTimer
from tools.record_time import describe, main

REPO = Path(__file__).resolve().parents[2]


def test_step_timer_with_fake_clock(tmp_path: Path) -> None:
    ticks = iter([100.0, 100.5, 100.6, 100.8, 101.1, 101.5])
    timer = StepTimer(samples_per_step=64, warmup_steps=1, clock=lambda: next(ticks))
    timer.start()
    seconds = [timer.step_end() for _ in range(4)]
    timer.step_end(samples=16)  # short last batch
    np.testing.assert_allclose(seconds, [0.5, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(timer.durations, [0.5, 0.1, 0.2, 0.3, 0.4])

    summary = timer.write_summary(tmp_path / "perf" / "step_times.json")
    saved = json.loads((tmp_path / "perf" / "step_times.json").read_text())
    assert saved == summary.as_dict()
    assert saved["steps_measured"] == 4
    assert saved["mean_ms"] == pytest.approx(250.0)
    assert saved["samples_per_second"] == pytest.approx((3 * 64 + 16) / 1.0)
    assert "samples_per_second" in describe(tmp_path / "perf" / "step_times.json")


def write_log(path: Path) -> None:
    with ResultsLogger(path, stream=io.StringIO()) as log:
        log.parameters({"batch_size": 4096})
        for step, ms in ((100, 10.0), (200, 30.0), (300, 20.0)):
            log.log(step, {"loss": 1.0 / step, "step_time_ms": ms})
        log.result({"throughput": 2048.0, "auc": 0.75})


def test_describe_results_log(tmp_path: Path, capsys) -> None:
    write_log(tmp_path / "log.json")
    assert main([str(tmp_path / "log.json")]) == 0
    out = capsys.readouterr().out
    assert "batch_size = 4096" in out
    assert "metrics over 3 log lines, steps 100 .. 300" in out
    assert "step_time_ms  n=3 mean=20 min=10 max=30 last=20 p50=20 p90=28" in out
    assert "throughput = 2048.0 samples/s" in out  # formats declared in the log's METADATA
    assert "auc = 0.750000" in out


def test_logs_without_numeric_metrics_and_results_only(tmp_path: Path, capsys) -> None:
    """An eval run logs only text (the restored checkpoint) before its result block."""
    with ResultsLogger(tmp_path / "eval.json", stream=io.StringIO()) as log:
        log.parameters({"mode": "eval"})
        log.log(7, {"restored_checkpoint": "/ckpt/ckpt-7"})
        log.result({"auc": 0.8})
    write_log(tmp_path / "train.json")
    assert main([str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "metrics over" not in out and "auc = 0.800000" in out
    assert main(["--results_only", str(tmp_path / "train.json"), str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "batch_size" not in out and "metrics over" not in out
    assert out.count("result:") == 2 and "throughput = 2048.0 samples/s" in out


def test_command_line_errors_name_the_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "log.json"
    write_log(path)
    with open(path, "a") as f:
        f.write("{broken\n")
    lines = len(path.read_text().splitlines())
    assert main([str(path)]) == 1
    assert f"log.json:{lines}: not a JSON line" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 1


def test_runs_as_module_from_repository_root(tmp_path: Path) -> None:
    write_log(tmp_path / "log.json")
    done = subprocess.run(
        [sys.executable, "-m", "tools.record_time", str(tmp_path / "log.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "auc = 0.750000" in done.stdout
