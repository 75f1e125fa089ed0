"""Progress of a pass: line cadence, rates and time left from a fake clock, rank 0 only, bar."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from models.training.progress import Progress, format_duration
from models.training.results_log import ResultsLogger, read_results_log


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(progress: Progress, clock: FakeClock, seconds_per_batch: list[float]) -> None:
    with progress:
        for seconds in seconds_per_batch:
            clock.now += seconds
            progress.advance()


def _progress_lines(path: Path) -> list[dict]:
    return [e.data for e in read_results_log(path) if e.type == "LOG"]


def test_a_line_every_n_batches_with_rate_and_time_left(tmp_path: Path) -> None:
    clock, stream = FakeClock(), io.StringIO()
    with ResultsLogger(tmp_path / "log.json", stream=stream) as log:
        progress = Progress(
            log, "eval", step=30, total=10, every=4, samples_per_batch=8, clock=clock
        )
        # 4 batches of 1 s, then 4 of 0.5 s, then 2 more (no line: 10 is not a multiple of 4).
        _run(progress, clock, [1.0] * 4 + [0.5] * 4 + [0.5] * 2)
    lines = _progress_lines(tmp_path / "log.json")
    assert [(d["eval_batches_done"], d["eval_batches_total"]) for d in lines] == [(4, 10), (8, 10)]
    # First line: 4 batches x 8 samples in 4 s, 6 batches left at 1 s each.
    assert lines[0]["eval_samples_per_second"] == pytest.approx(8.0)
    assert lines[0]["eval_eta_s"] == pytest.approx(6.0)
    # Second line: the rate since the first line (0.5 s per batch), 2 batches left.
    assert lines[1]["eval_samples_per_second"] == pytest.approx(16.0)
    assert lines[1]["eval_eta_s"] == pytest.approx(1.0)
    printed = stream.getvalue().splitlines()
    assert printed == [
        "step 30 | eval_batches_done: 4 | eval_batches_total: 10 | "
        "eval_samples_per_second: 8.0 | eval_eta_s: 6",
        "step 30 | eval_batches_done: 8 | eval_batches_total: 10 | "
        "eval_samples_per_second: 16.0 | eval_eta_s: 1",
    ]
    assert "\r" not in stream.getvalue()  # not a terminal: no bar


def test_samples_of_a_short_batch_count_with_their_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    with ResultsLogger(tmp_path / "log.json", stream=io.StringIO()) as log:
        progress = Progress(log, "eval", 0, total=2, every=2, samples_per_batch=100, clock=clock)
        with progress:
            clock.now += 1.0
            progress.advance()
            clock.now += 1.0
            progress.advance(50)
    (line,) = _progress_lines(tmp_path / "log.json")
    assert line["eval_samples_per_second"] == pytest.approx(75.0)
    assert line["eval_eta_s"] == 0


def test_other_ranks_print_and_write_nothing(tmp_path: Path) -> None:
    clock, stream = FakeClock(), Terminal()
    with ResultsLogger(tmp_path / "log.json", rank=1, stream=stream) as log:
        progress = Progress(log, "inference", 0, total=6, every=2, samples_per_batch=4, clock=clock)
        _run(progress, clock, [1.0] * 6)
    assert stream.getvalue() == ""
    assert not (tmp_path / "log.json").exists()


def test_no_time_elapsed_gives_counts_without_a_rate(tmp_path: Path) -> None:
    clock = FakeClock()
    with ResultsLogger(tmp_path / "log.json", stream=io.StringIO()) as log:
        progress = Progress(log, "eval", 0, total=4, every=2, samples_per_batch=4, clock=clock)
        _run(progress, clock, [0.0] * 4)
    lines = _progress_lines(tmp_path / "log.json")
    assert lines == [
        {"eval_batches_done": 2, "eval_batches_total": 4},
        {"eval_batches_done": 4, "eval_batches_total": 4},
    ]


def test_a_terminal_gets_a_bar_redrawn_in_place_and_cleared(tmp_path: Path) -> None:
    clock, stream = FakeClock(), Terminal()
    with ResultsLogger(None, stream=stream) as log:
        progress = Progress(
            log, "eval", 5, total=8, every=4, samples_per_batch=10, clock=clock, redraw_seconds=1.5
        )
        _run(progress, clock, [1.0] * 8)
        out = stream.getvalue()
    # Redrawn when 1.5 s have passed since the last drawing, and after each line.
    bars = [part for part in out.split("\r") if part.startswith("eval [")]
    assert [b.split("] ")[1].split(" batches")[0] for b in bars] == [
        "2/8",
        "4/8",  # right after the line of batch 4
        "6/8",
        "8/8",
    ]
    assert bars[0].startswith("eval [######" + "." * 18 + "] 2/8 batches | 10.0 samples/s")
    assert "ETA 6s" in bars[0]
    # The lines stay; the bar is cleared before each of them and at the end.
    lines = [line.strip("\r ") for line in out.split("\n")]
    assert lines[0].endswith(
        "step 5 | eval_batches_done: 4 | eval_batches_total: 8 | "
        "eval_samples_per_second: 10.0 | eval_eta_s: 4"
    )
    assert out.endswith("\r" + " " * len(bars[-1]) + "\r")


def test_invalid_settings_are_refused() -> None:
    log = ResultsLogger(None, stream=io.StringIO())
    with pytest.raises(ValueError, match="print_freq"):
        Progress(log, "eval", 0, total=4, every=0, samples_per_batch=1)
    with pytest.raises(ValueError, match="total"):
        Progress(log, "eval", 0, total=-1, every=1, samples_per_batch=1)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (42, "42s"), (500, "8m20s"), (7500, "2h05m"), (-3, "0s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
