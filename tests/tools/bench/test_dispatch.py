"""``python -m tools.bench NAME``: the names listed, every benchmark reachable, errors named."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tools import bench

ROOT = Path(__file__).resolve().parents[3]


def test_every_benchmark_module_is_registered_and_has_main():
    package = ROOT / "tools" / "bench"
    on_disk = {p.stem for p in package.glob("*.py") if not p.stem.startswith("__")}
    on_disk |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert on_disk == set(bench.BENCHMARKS)
    for name, entry in bench.BENCHMARKS.items():
        assert entry.module == f"tools.bench.{name}"
        assert callable(importlib.import_module(entry.module).main)


def test_help_and_no_arguments_list_every_name(capsys):
    assert bench.run(["--help"]) == 0
    listed = capsys.readouterr().out
    assert bench.run([]) == 2
    assert capsys.readouterr().out == listed
    for name in bench.BENCHMARKS:
        assert f"  {name} " in listed


def test_an_unknown_name_is_refused_with_the_list(capsys):
    assert bench.run(["trian", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'trian'" in err
    assert "train" in err.split("unknown", 1)[1]


@pytest.mark.parametrize("name", ["preproc", "distributed", "lookup"])
def test_the_command_line_reaches_the_benchmark(name):
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench", name, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"DLRM_HUGE_PAGES": "0", "PATH": "/usr/bin:/bin"},
    )
    assert f"python -m tools.bench {name}" in done.stdout
