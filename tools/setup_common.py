"""Plumbing shared by the set-up steps: their error, log line, probe and command runner.

Standard library only, like the rest of the set-up (it runs before the virtualenv exists).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class SetupError(RuntimeError):
    """A set-up step failed; the message says which and what to do."""


def log(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def probe(python: str | Path, code: str) -> str | None:
    """Runs `code` with `python`; returns its last stdout line, or None if it failed."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        out = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, env=env, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1].strip() if out.returncode == 0 and lines else None


def run(step: str, cmd: list[str], hint: str, env: dict | None = None, cwd=None) -> None:
    """Runs a command of set-up step `step`; on failure raises with the hint."""
    log(f"{step}: {' '.join(cmd)}")
    result = subprocess.run(cmd, env=env, cwd=cwd)
    if result.returncode != 0:
        raise SetupError(f"step '{step}' failed (exit {result.returncode}): {hint}")
