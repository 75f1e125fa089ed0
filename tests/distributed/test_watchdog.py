"""The step watchdog: a rank alive but stuck before its next step ends the job.

Unit tests of `StepWatchdog` with a recording callback, the real abort in a
subprocess, the training loop's beats and suspensions, and a tiny `dlrm_main`
run under ``horovodrun -np 2`` whose rank 1 stops before a step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tensorflow as tf

from models.distributed.watchdog import WATCHDOG_EXIT_CODE, StepWatchdog
from models.training.loop import LoopSettings
from models.training.trainer import Trainer
from tests.distributed.horovod_launch import (
    HOROVOD_MARKS,
    HOROVODRUN,
    REPO,
    horovod_env,
)


class _Recorder:
    """`on_timeout` that records the message instead of ending the process."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        self.fired.set()


def test_fires_when_no_step_completes_in_time() -> None:
    recorder = _Recorder()
    watchdog = StepWatchdog(0.2, where="rank 3 of 4", on_timeout=recorder)
    started = time.monotonic()
    watchdog.start(5)
    assert recorder.fired.wait(10), "the watchdog never fired"
    assert time.monotonic() - started >= 0.2
    watchdog.stop()
    (message,) = recorder.messages
    assert "rank 3 of 4: no training step completed within 0.2 s (--step_timeout_s)" in message
    assert "the last completed step is 5, step 6 has been running for" in message


def test_beats_and_suspensions_keep_it_quiet_and_stop_ends_it() -> None:
    recorder = _Recorder()
    watchdog = StepWatchdog(0.5, on_timeout=recorder)
    watchdog.start(0)
    for step in range(1, 31):  # 1.5 s of steps, each well within the timeout
        time.sleep(0.05)
        watchdog.beat(step)
    with watchdog.suspended():  # an evaluation three times the timeout
        time.sleep(1.5)
    assert not recorder.fired.is_set(), recorder.messages
    # Re-armed after the suspension: no further beat, so it fires for step 31.
    assert recorder.fired.wait(10)
    assert "the last completed step is 30, step 31" in recorder.messages[0]
    watchdog.stop()

    quiet = _Recorder()
    stopped = StepWatchdog(0.2, on_timeout=quiet)
    stopped.start(0)
    stopped.stop()
    time.sleep(0.5)
    assert not quiet.fired.is_set()
    assert not any(t.name == "step-watchdog" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("timeout", [0, -1.0, True, "10"])
def test_rejects_a_timeout_that_is_not_a_positive_number(timeout) -> None:
    with pytest.raises(ValueError, match="timeout_s must be"):
        StepWatchdog(timeout)


def test_start_twice_is_an_error() -> None:
    watchdog = StepWatchdog(60, on_timeout=_Recorder())
    watchdog.start(0)
    try:
        with pytest.raises(RuntimeError, match="called twice"):
            watchdog.start(0)
    finally:
        watchdog.stop()


def test_the_default_action_ends_the_process_with_the_stacks() -> None:
    code = (
        "import time\n"
        "from models.distributed.watchdog import StepWatchdog\n"
        "StepWatchdog(0.3, where='rank 0 of 1').start(7)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == WATCHDOG_EXIT_CODE, done.stderr[-2000:]
    assert time.monotonic() - started < 30
    assert "rank 0 of 1: no training step completed within 0.3 s" in done.stderr
    assert "the last completed step is 7" in done.stderr
    # faulthandler's dump shows where the main thread was stuck (the sleep, line 4).
    assert "most recent call first" in done.stderr
    assert 'File "<string>", line 4 in <module>' in done.stderr


class _Hooks:
    def __init__(self, slow_s: float) -> None:
        self.slow_s = slow_s

    def progress(self, step, metrics) -> None:
        pass

    def evaluate(self, step, alive):
        # 4 batches of a quarter of the slow time each, with a beat after each
        for _ in range(4):
            time.sleep(self.slow_s / 4)
            alive()

    def save_checkpoint(self, step, epoch, batch) -> None:
        time.sleep(self.slow_s)


def _trainer(step_fn, watchdog, slow_s: float, evals: int, ckpt_every: int) -> Trainer:
    settings = LoopSettings(
        epochs=1,
        steps_per_epoch=4,
        evals_per_epoch=evals,
        print_freq=1,
        checkpoint_every_n_steps=ckpt_every,
    )
    return Trainer(
        step_fn, settings, _Hooks(slow_s), learning_rate=lambda step: 0.0, watchdog=watchdog
    )


def _batches(epoch: int, start: int):
    return [({"x": tf.ones([2])}, tf.zeros([2, 1]))] * (4 - start)


def test_training_loop_beats_per_step_and_evaluation_batch_and_not_in_checkpoints() -> None:
    recorder = _Recorder()
    watchdog = StepWatchdog(0.4, on_timeout=recorder)
    # Checkpoints after steps 2 and 4 and an evaluation after step 4, each
    # lasting twice the timeout (the evaluation in 4 batches of half the
    # timeout); the steps themselves are fast.
    trainer = _trainer(lambda f, y: tf.constant(0.5), watchdog, 0.8, evals=1, ckpt_every=2)
    assert trainer.fit(_batches).steps == 4
    assert not recorder.fired.is_set(), recorder.messages
    assert not any(t.name == "step-watchdog" and t.is_alive() for t in threading.enumerate())


def test_training_loop_stuck_before_a_step_is_reported_with_that_step() -> None:
    recorder = _Recorder()
    calls = []

    def step_fn(features, labels):
        calls.append(1)
        if len(calls) == 3:  # stuck, as a rank waiting for a peer that never comes
            assert recorder.fired.wait(10), "the watchdog never fired"
            raise RuntimeError("released by the watchdog")
        return tf.constant(0.5)

    trainer = _trainer(step_fn, StepWatchdog(0.3, on_timeout=recorder), 0.0, 0, 0)
    with pytest.raises(RuntimeError, match="released by the watchdog"):
        trainer.fit(_batches)
    (message,) = recorder.messages
    assert "the last completed step is 2, step 3 has been running for" in message


def test_a_stuck_evaluation_batch_is_reported_with_the_batches_done() -> None:
    recorder = _Recorder()

    class StuckEvaluation(_Hooks):
        def evaluate(self, step, alive):
            alive()
            alive()  # two batches done, the third never returns
            assert recorder.fired.wait(10), "the watchdog never fired"
            raise RuntimeError("released by the watchdog")

    settings = LoopSettings(epochs=1, steps_per_epoch=4, evals_per_epoch=1, print_freq=1)
    trainer = Trainer(
        lambda f, y: tf.constant(0.5),
        settings,
        StuckEvaluation(0.0),
        learning_rate=lambda step: 0.0,
        watchdog=StepWatchdog(0.3, where="rank 1 of 2", on_timeout=recorder),
    )
    with pytest.raises(RuntimeError, match="released by the watchdog"):
        trainer.fit(_batches)
    (message,) = recorder.messages
    assert "rank 1 of 2: the evaluation after step 4 made no progress within 0.3 s" in message
    assert "2 of its batches completed, batch 3 has been running for" in message


def test_watching_gives_each_alive_a_full_timeout_and_steps_one_after() -> None:
    recorder = _Recorder()
    watchdog = StepWatchdog(0.3, on_timeout=recorder)
    watchdog.start(5)
    with watchdog.watching("evaluation"):
        for _ in range(5):  # 1 s in all, 0.2 s between beats
            time.sleep(0.2)
            watchdog.alive()
    time.sleep(0.2)  # the next step still has time left
    watchdog.beat(6)
    assert not recorder.fired.is_set(), recorder.messages
    with watchdog.watching("evaluation"):
        assert recorder.fired.wait(5)
    watchdog.stop()
    assert "the evaluation after step 6 made no progress" in recorder.messages[0]


# dlrm_main under horovodrun: the first step (tracing, ~5 s on a loaded
# 2-core machine) is timed too, so the timeout leaves room for it.
HVD_TIMEOUT_S = 10
HANG_STEP = 3
TINY = [
    "--dataset_type=synthetic",
    "--synthetic_dataset_cardinalities=" + ",".join(["5", "9"] * 13),
    "--synthetic_dataset_train_batches=8",
    "--batch_size=32",
    "--valid_batch_size=32",
    "--embedding_dim=4",
    "--bottom_mlp_dims=8,4",
    "--top_mlp_dims=8,1",
    "--skip_eval",
    "--print_freq=1",
]


def _launches_horovod(test):
    for mark in HOROVOD_MARKS:
        test = mark(test)
    return test


@pytest.mark.slow
@_launches_horovod
def test_a_rank_stuck_before_its_step_ends_the_job(tmp_path: Path) -> None:
    mark_file = tmp_path / "hung"
    # Rank 1 stops before step HANG_STEP with its own watchdog off: only rank
    # 0's watchdog can end the job.
    command = [
        *(str(HOROVODRUN), "-np", "2", "--gloo", sys.executable),
        *("-m", "tests.distributed.hang_program", str(mark_file), "1", str(HANG_STEP), "0"),
        *("--", *TINY, "--use_horovod", f"--step_timeout_s={HVD_TIMEOUT_S}"),
        f"--log_path={tmp_path / 'log.json'}",
    ]
    job = subprocess.Popen(
        command,
        cwd=REPO,
        env=horovod_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    hung_pid = None
    try:
        output, _ = job.communicate(timeout=240)
        ended = time.time()
        assert mark_file.exists(), f"rank 1 never reached step {HANG_STEP}:\n{output[-3000:]}"
        hung_at, hung_pid = mark_file.read_text().split()
        hung_pid = int(hung_pid)
        assert job.returncode != 0, output[-3000:]
        assert f"rank 0 of 2: no training step completed within {HVD_TIMEOUT_S} s" in output, (
            output[-3000:]
        )
        assert f"the last completed step is {HANG_STEP - 1}," in output
        assert f"exit with status code {WATCHDOG_EXIT_CODE}" in output  # horovodrun's report
        # Bounded: the timeout after rank 0's last step (which ended before
        # rank 1 stopped) plus horovodrun stopping the ranks.
        assert ended - float(hung_at) < HVD_TIMEOUT_S + 15, f"{ended - float(hung_at):.1f} s"
        # The stuck rank was ended too.
        assert not _is_our_process(hung_pid, tmp_path)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        if hung_pid is not None and _is_our_process(hung_pid, tmp_path):
            os.kill(hung_pid, signal.SIGKILL)


def _is_our_process(pid: int, tmp_path: Path) -> bool:
    """True while ``pid`` is still the rank this test started (not a reused pid)."""
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        if "State:\tZ" in status:
            return False
        return str(tmp_path) in Path(f"/proc/{pid}/cmdline").read_text()
    return False
