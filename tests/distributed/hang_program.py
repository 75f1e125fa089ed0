"""``dlrm_main.main`` with one rank that stops before a step and stays alive.

    [horovodrun -np 2 --gloo] python -m tests.distributed.hang_program \\
        MARK_FILE HUNG_RANK HANG_STEP HUNG_RANK_TIMEOUT_S -- DLRM_MAIN_ARGS...

On rank ``HUNG_RANK`` the train step ``HANG_STEP`` never starts: the rank
writes ``<time> <pid>`` to ``MARK_FILE`` and sleeps, alive, without reaching
the step's collectives (what a stuck input pipeline looks like to the other
ranks). That rank runs with ``--step_timeout_s=HUNG_RANK_TIMEOUT_S`` (0: its
own watchdog off, so only the other ranks' watchdogs can end the job); the
other ranks use the timeout in ``DLRM_MAIN_ARGS``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dlrm_main
from models.training.train_step import TrainStep


def _hang_before(step: int, mark_file: Path) -> None:
    original = TrainStep.__call__
    calls = 0

    def call(self, features, labels):
        nonlocal calls
        calls += 1
        if calls == step:
            mark_file.write_text(f"{time.time()} {os.getpid()}\n")
            while True:  # alive, never issuing the step's collectives
                time.sleep(60)
        return original(self, features, labels)

    TrainStep.__call__ = call


def main(argv: list[str]) -> None:
    if len(argv) < 6 or argv[5] != "--":
        raise SystemExit(
            f"usage: {argv[0]} MARK_FILE HUNG_RANK HANG_STEP HUNG_RANK_TIMEOUT_S -- ARGS..."
        )
    mark_file, hung_rank, hang_step, hung_timeout = argv[1:5]
    args = argv[6:]
    # Set by horovodrun; one process is rank 0.
    if int(os.environ.get("HOROVOD_RANK", "0")) == int(hung_rank):
        _hang_before(int(hang_step), Path(mark_file))
        args = [*args, f"--step_timeout_s={hung_timeout}"]  # the last value of a flag wins
    dlrm_main.main(["dlrm_main.py", *args])


if __name__ == "__main__":
    main(sys.argv)
