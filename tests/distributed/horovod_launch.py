"""Starting ``horovodrun`` jobs from tests: where it is, its environment, a checked run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOROVODRUN = Path(sys.executable).parent / "horovodrun"

# Marks of every test that launches horovodrun; skipped only without Horovod.
HOROVOD_MARKS = [
    pytest.mark.horovod,
    pytest.mark.skipif(
        importlib.util.find_spec("horovod") is None or not HOROVODRUN.exists(),
        reason=f"Horovod is not importable from {sys.executable} (no horovodrun next to it); "
        "tools/setup_env.sh builds it",
    ),
]


def horovod_env(**extra: str) -> dict[str, str]:
    """This environment with the repository importable and TensorFlow's log quiet."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_horovod(
    launch: list[str], program: list[str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """Runs ``horovodrun *launch python *program`` from the repository root; asserts success.

    Args:
        launch: horovodrun options, e.g. ``["-np", "2", "--gloo"]``.
        program: the interpreter's arguments, e.g. ``["-m", "tests.distributed.hvd_program"]``.
        timeout: seconds before the job is killed (and the test fails).
    """
    done = subprocess.run(
        [str(HOROVODRUN), *launch, sys.executable, *program],
        cwd=REPO,
        env=horovod_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"horovodrun {' '.join(launch)} failed ({done.returncode}):\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done
