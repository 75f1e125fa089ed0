"""tools.bench.lookup: id laws, and a tiny run of both processes per law."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_huge_pages import _restarts_here
from tools.bench.lookup import _ids, main


def test_id_laws_stay_in_the_table_and_differ_in_skew() -> None:
    uniform = _ids("uniform", 1000, 20000, seed=0)
    power = _ids("powerlaw", 1000, 20000, seed=0)
    for ids in (uniform, power):
        assert ids.min() >= 0 and ids.max() <= 999
    # Log-uniform: about half the ids below sqrt(1000) ~ 32; uniform: about 3%.
    assert 0.4 < np.mean(power < 32) < 0.6
    assert np.mean(uniform < 32) < 0.06


def test_tiny_run_measures_each_law_without_and_with_huge_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "lookup.json"
    flags = ["--tables=2", "--rows=3000", "--dim=8", "--batch_size=64", "--repeats=2"]
    assert main([*flags, f"--json={out}"]) == 0
    results = json.loads(out.read_text())
    printed = capsys.readouterr().out
    runs = results["runs"]
    # The second process of each law restarts with the tunable where this machine allows it.
    on = _restarts_here()
    assert [(r["law"], r["huge_pages"].endswith("malloc huge pages on")) for r in runs] == [
        ("uniform", False),
        ("uniform", on),
        ("powerlaw", False),
        ("powerlaw", on),
    ]
    assert all(r["lookup_ms"] > 0 and r["update_ms"] > 0 for r in runs)
    assert "uniform: huge pages speed lookups " in printed
    assert "powerlaw: huge pages speed lookups " in printed


def test_bad_laws_are_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--laws=zipf"])
    assert "--laws must name some of" in capsys.readouterr().err
