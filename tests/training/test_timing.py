"""Step timing: summaries of synthetic timings, the step timer, the training clock."""

from __future__ import annotations

import pytest

from models.training.timing import StepTimer, TrainingClock, summarize


def test_summary_excludes_warmup_and_interpolates_percentiles() -> None:
    # Two slow warmup steps, then 10, 20, 30, 40 ms at 100 samples each.
    summary = summarize([5.0, 3.0, 0.010, 0.020, 0.030, 0.040], samples=100, warmup_steps=2)
    assert summary.steps_recorded == 6
    assert summary.steps_measured == 4
    assert summary.samples_measured == 400
    assert summary.mean_ms == pytest.approx(25.0)
    assert summary.p50_ms == pytest.approx(25.0)
    assert summary.p90_ms == pytest.approx(37.0)  # 30 + 0.7 * 10 (linear interpolation)
    assert summary.p99_ms == pytest.approx(39.7)
    assert (summary.min_ms, summary.max_ms) == (pytest.approx(10.0), pytest.approx(40.0))
    assert summary.samples_per_second == pytest.approx(400 / 0.1)


def test_throughput_uses_per_step_samples() -> None:
    # A short last batch: throughput is total samples over total time, not a mean of rates.
    summary = summarize([0.1, 0.1, 0.05], samples=[1000, 1000, 100])
    assert summary.samples_per_second == pytest.approx(2100 / 0.25)


def test_restart_after_pause_does_not_count_the_pause() -> None:
    ticks = iter([0.0, 1.0, 50.0, 51.0])
    timer = StepTimer(samples_per_step=1, clock=lambda: next(ticks))
    timer.start()
    timer.step_end()
    timer.start()  # after an evaluation
    timer.step_end()
    assert timer.durations == [1.0, 1.0]


@pytest.mark.parametrize(
    ("durations", "kwargs", "message"),
    [
        ([0.1, 0.2], {"warmup_steps": 2}, "2 steps recorded and 2 warmup steps excluded"),
        ([0.1, -0.2], {}, "step 1 has an invalid duration"),
        ([0.1, float("nan")], {}, "step 1 has an invalid duration"),
        ([0.1], {"samples": [1, 2]}, "2 sample counts for 1 step durations"),
    ],
)
def test_invalid_timings(durations, kwargs, message) -> None:
    kwargs = {"samples": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        summarize(durations, **kwargs)


def test_step_end_before_start() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        StepTimer(samples_per_step=8).step_end()


def test_training_clock_counts_only_stretches_with_steps() -> None:
    ticks = iter([10.0, 12.0, 20.0, 30.0, 34.0])
    clock = TrainingClock(clock=lambda: next(ticks))
    clock.resume()  # 10
    clock.count(64)
    clock.count(64)
    clock.pause()  # 12: two steps in 2 s
    clock.resume()  # 20: warm-up only, nothing counted
    clock.pause()  # not even read: the stretch had no step
    clock.resume()  # 30
    clock.count(16)  # a short last batch
    clock.pause()  # 34
    assert (clock.steps, clock.samples, clock.seconds) == (3, 144, pytest.approx(6.0))
    clock.pause()  # no stretch running: nothing changes (no tick left to read)
    assert clock.seconds == pytest.approx(6.0)
