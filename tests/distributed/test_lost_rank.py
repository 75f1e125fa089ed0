"""`dlrm_main.py` under ``horovodrun -np 2``: a killed rank is named in one line by rank 0."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.distributed.horovod_launch import HOROVOD_MARKS, HOROVODRUN, REPO, horovod_env
from tests.test_main import TINY

pytestmark = HOROVOD_MARKS


def _rank_pid(marker: str, rank: int) -> int | None:
    """The pid of the dlrm_main.py process of ``rank`` whose command line holds ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if marker.encode() not in b" ".join(command) or b"dlrm_main.py" not in command[1:2]:
                continue
            if f"HOROVOD_RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
    return None


def test_rank_0_names_the_killed_rank_in_one_line(tmp_path) -> None:
    log = tmp_path / "log.json"
    flags = [a for a in TINY if not a.startswith("--synthetic_dataset_train_batches")]
    launch = [str(HOROVODRUN), "-np", "2", "--gloo", sys.executable, "dlrm_main.py"]
    job = subprocess.Popen(
        [
            *launch,
            "--use_horovod",
            *flags,
            "--synthetic_dataset_train_batches=1000000",
            *("--skip_eval", "--print_freq=1", f"--log_path={log}"),
        ],
        cwd=REPO,
        env=horovod_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while not (log.exists() and '"loss": ' in log.read_text()):
            assert job.poll() is None, f"job ended early:\n{job.stdout.read()[-3000:]}"
            assert time.time() < deadline, "no training step within 240 s"
            time.sleep(0.3)
        victim = _rank_pid(str(log), 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        output, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode != 0
    rank0 = [line for line in output.splitlines() if line.startswith("[0]<stderr>:")]
    expected = f"[0]<stderr>:dlrm_main.py: rank 0 of 2: rank 1 (pid {victim} on "
    assert any(line.startswith(expected) and "is gone" in line for line in rank0), output[-3000:]
    # Rank 0 prints no Python traceback (horovodrun's own report follows on its stderr).
    assert not any("Traceback" in line for line in rank0), output[-3000:]
