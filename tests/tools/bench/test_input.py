"""tools.bench.input: the machine header and the JSON output (the rows are tested in tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.bench import input as bench_input


def test_json_holds_the_machine_and_every_printed_row(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "input.json"
    argv = ["--rows", "5000", "--batch_sizes", "2048", "--work_dir", str(tmp_path)]
    assert bench_input.main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert printed.startswith("machine: ")
    assert results["machine"]["tensorflow"] and results["rows"] == 5000
    runs = results["runs"]
    assert [r["pipeline"] for r in runs] == [
        "binary, TF ops (in order)",
        "binary, preadv (shuffled)",
        "binary, read_batch alone",
        "synthetic powerlaw, tf.data",
        "synthetic constant, tf.data",
    ]
    for run in runs:
        assert run["batch_size"] == 2048 and run["samples_per_s"] > 0
        assert f"{run['pipeline']:<28}{2048:>8}{run['batches']:>9}" in printed
        assert run["first_batch_seconds"] > 0
