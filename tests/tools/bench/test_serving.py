"""tools.bench serving: generated requests are valid Criteo rows, the report's figures, and a
tiny run of every signature in fresh processes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from preproc.parse import parse_block
from tests.serving import cases
from tools.bench import serving
from tools.bench.serving import setup


def test_generated_requests_are_rows_preproc_accepts_with_known_and_unseen_values():
    spec = setup.reference_spec(3, cardinalities=(50, 1000, 7))
    assert [v.size for v in spec.vocabularies] == [49, 999, 6]
    assert all(np.unique(v).size == v.size for v in spec.vocabularies)
    small = dataclass_replace_tables(spec)
    rows = setup.raw_requests(small, 4000, 1)
    assert rows.shape == (4000, 39)
    data = b"".join(b"1\t" + b"\t".join(r) + b"\n" for r in rows)
    parsed = parse_block(data)
    assert parsed.reject_lines.size == 0 and parsed.num_rows == 4000
    assert 0.05 < parsed.integer_missing.mean() < 0.15
    assert 0.02 < parsed.categorical_missing.mean() < 0.08
    first = parsed.categorical[~parsed.categorical_missing[:, 0], 0]
    known = np.isin(first, small.vocabularies[0])
    assert 0.85 < known.mean() < 0.99  # about 5% unseen


def dataclass_replace_tables(spec):
    """The spec with 26 small vocabularies (raw_requests draws one column per table)."""
    import dataclasses

    return dataclasses.replace(spec, vocabularies=(spec.vocabularies[1],) * 26)


def test_the_report_gives_tails_throughput_and_the_raw_cost():
    def point(p50, p99, cpu):
        return {"p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "samples_per_second": 10.0,
                "cpu_p50_ms": cpu, "cpu_p99_ms": cpu, "runqueue_wait_p99_ms": 0.5}  # fmt: skip

    results = {
        "signatures": {
            "ids": {"1": point(1.0, 1.2, 1.0), "2048": point(100.0, 110.0, 200.0)},
            "raw": {"1": point(2.0, 3.0, 2.0), "2048": point(105.0, 120.0, 210.0)},
            "preprocess": {"1": point(1.0, 1.1, 1.0), "2048": point(4.0, 5.0, 8.0)},
        }
    }
    report = serving.format_report(results)
    assert "ids          2048   100.000   100.000   110.000     1.10" in report
    assert "batch  2048: +0.050 p50, +0.050 CPU; preprocess 0.040 p50, 0.040 CPU" in report
    assert "batch     1: +1.000 p50, +1.000 CPU" in report


@pytest.mark.slow
def test_a_tiny_run_measures_every_signature_in_its_own_process(tmp_path, capsys):
    case = cases.criteo_case(tmp_path / "data")
    model = cases.export_untrained(case, tmp_path / "model")
    out = tmp_path / "bench.json"
    argv = ["--model", str(model), "--input_files", *case.inputs, "--requests", "6",
            "--warmup", "1", "--batch_sizes", "1,5", "--distinct", "2"]  # fmt: skip
    argv += ["--json", str(out)]
    assert serving.main(argv) == 0
    results = json.loads(out.read_text())
    assert sorted(results["signatures"]) == ["ids", "preprocess", "raw"]
    for points in results["signatures"].values():
        assert sorted(points) == ["1", "5"]
        for p in points.values():
            assert p["steps_measured"] == 6 and p["p99_ms"] >= p["p50_ms"] > 0
            assert p["cpu_p50_ms"] > 0 and p["runqueue_wait_p99_ms"] >= 0
    printed = capsys.readouterr().out
    assert "\nmachine: " in printed and "raw path cost" in printed
    assert printed.count("--- ") == 3  # one fresh process per signature
