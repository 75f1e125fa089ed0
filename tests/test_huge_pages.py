"""models.huge_pages: when a program restarts with glibc's huge-page tunable, and that it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.huge_pages import (
    OPT_OUT,
    THP_MODE_FILE,
    TUNABLE,
    glibc_version,
    huge_pages_tunables,
    thp_mode,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_thp_mode_reads_the_selected_bracket() -> None:
    assert thp_mode("always [madvise] never\n") == "madvise"
    assert thp_mode("[always] madvise never") == "always"
    assert thp_mode("always madvise [never]") == "never"
    assert thp_mode("garbage") is None and thp_mode(None) is None


@pytest.mark.parametrize(
    ("env", "mode", "glibc", "expected"),
    [
        ({}, "madvise", (2, 36), f"{TUNABLE}=1"),
        ({}, "always", (2, 35), f"{TUNABLE}=1"),
        # Other tunables are kept; the restart's own value stops a second restart.
        (
            {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
            "madvise",
            (2, 36),
            f"glibc.malloc.arena_max=2:{TUNABLE}=1",
        ),
        ({"GLIBC_TUNABLES": f"{TUNABLE}=1"}, "madvise", (2, 36), None),
        ({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, "madvise", (2, 36), None),  # the user's choice
        ({OPT_OUT: "0"}, "madvise", (2, 36), None),
        ({OPT_OUT: "1"}, "madvise", (2, 36), f"{TUNABLE}=1"),
        ({}, "never", (2, 36), None),
        ({}, None, (2, 36), None),  # no THP in this kernel
        ({}, "madvise", (2, 34), None),  # glibc without the tunable
        ({}, "madvise", None, None),  # another C library
    ],
)
def test_when_to_restart(env, mode, glibc, expected) -> None:
    assert huge_pages_tunables(env, mode, glibc) == expected


_PROBE = """
import json, os, sys
from models.huge_pages import restart_with_huge_pages, huge_pages_state
restart_with_huge_pages()
import numpy as np
block = np.ones(64 << 20, np.uint8)  # malloc'd, touched: 64 MiB
huge = [line for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages")]
print(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], "state": huge_pages_state(),
                  "tunables": os.environ.get("GLIBC_TUNABLES"),
                  "huge_kib": int(huge[0].split()[1]) if huge else None}))
"""


def _probe(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", OPT_OUT)}
    env.update(env_extra, PYTHONPATH=str(REPO_ROOT))
    with subprocess.Popen(
        [sys.executable, "-c", _PROBE, "--flag", "a b"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    # The same process (exec), not a child: launchers such as horovodrun track this PID.
    assert result["pid"] == process.pid
    return result


def _restarts_here() -> bool:
    try:
        mode = thp_mode(Path(THP_MODE_FILE).read_text())
    except OSError:
        return False
    return huge_pages_tunables({}, mode, glibc_version()) is not None


@pytest.mark.skipif(not _restarts_here(), reason="no THP or glibc < 2.35 on this machine")
def test_the_restart_keeps_the_command_line_and_gets_huge_pages() -> None:
    restarted = _probe({})
    assert restarted["argv"] == ["--flag", "a b"]
    assert restarted["tunables"] == f"{TUNABLE}=1"
    assert restarted["state"].endswith("malloc huge pages on")
    assert restarted["huge_kib"] >= 2048  # the kernel backed the block with 2 MiB pages
    kept = _probe({OPT_OUT: "0"})
    assert kept["tunables"] is None and kept["state"].endswith("malloc huge pages off")
    assert kept["argv"] == ["--flag", "a b"]
    assert kept["huge_kib"] < restarted["huge_kib"]


def test_a_refused_exec_runs_on_without_huge_pages(monkeypatch, capsys) -> None:
    import models.huge_pages as huge_pages

    def refuse(*args) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(huge_pages, "_kernel_thp_mode", lambda: "madvise")
    monkeypatch.setattr(huge_pages, "glibc_version", lambda: (2, 36))
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv(OPT_OUT, raising=False)
    monkeypatch.setattr(huge_pages.os, "execve", refuse)
    huge_pages.restart_with_huge_pages()  # returns instead of raising
    assert "huge pages: could not restart (" in capsys.readouterr().err
