"""Plumbing shared by the set-up steps: their error, log line, probe, command runner and the
virtualenv being prepared.

Standard library only, like the rest of the set-up (it runs before the virtualenv exists).
"""

from __future__ import annotations

import json
import os
import re
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


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Environment:
    """The virtualenv being prepared."""

    def __init__(self, venv: Path, cache_dir: Path) -> None:
        self.venv = venv
        self.cache_dir = cache_dir
        self.python = venv / "bin" / "python"

    def pip(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "pip", "--disable-pip-version-check", *args]

    def create(self, base_python: str, system_site_packages: bool) -> None:
        cfg = self.venv / "pyvenv.cfg"
        if cfg.exists() and self.python.exists():
            shares = "include-system-site-packages = true" in cfg.read_text()
            if shares != system_site_packages:
                raise SetupError(
                    f"virtualenv {self.venv} was created "
                    f"{'with' if shares else 'without'} the system site-packages, but the base "
                    f"Python {'has no' if shares else 'has a'} TensorFlow now; remove it "
                    f"(rm -r {self.venv}) or set DLRM_VENV to another path"
                )
            log(f"virtualenv: reusing {self.venv}")
            return
        cmd = [base_python, "-m", "venv", str(self.venv)]
        if system_site_packages:
            cmd.insert(3, "--system-site-packages")
        run("virtualenv", cmd, "install the venv module (Debian: apt-get install python3-venv)")

    def installed(self) -> dict[str, str]:
        out = subprocess.run(
            self.pip("list", "--format=json"), capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise SetupError(f"step 'pip list' failed: {out.stderr.strip()}")
        return {normalise(p["name"]): p["version"] for p in json.loads(out.stdout)}
