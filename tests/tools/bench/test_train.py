"""tools.bench.train: FLOP count by hand, the baseline's interaction, a tiny end-to-end run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tools.bench.train import PlainDotInteraction, flops_per_sample, main
from tools.bench.train.bound import step_matmuls
from tools.bench.train.processes import child_argv, format_processes, summarize_processes


def test_reference_flops_per_sample_by_hand() -> None:
    # Bottom MLP 13-512-256-128; top MLP reads 128 + 27*26/2 = 479 features.
    bottom = 13 * 512 + 512 * 256 + 256 * 128
    top = 479 * 1024 + 1024 * 1024 + 1024 * 512 + 512 * 256 + 256 * 1
    gram = 27 * 27 * 128
    count = flops_per_sample(26, 128, (512, 256, 128), (1024, 1024, 512, 256, 1), 13)
    assert (count.bottom_mlp_macs, count.top_mlp_macs, count.interaction_macs) == (
        170_496,
        2_194_688,
        93_312,
    )
    assert (bottom, top, gram) == (170_496, 2_194_688, 93_312)
    assert count.forward_flops == 2 * 2_458_496
    assert count.training_flops == 14_750_976  # the "about 14.8 MFLOP"


def test_tiny_flops_per_sample_by_hand() -> None:
    # F = 2, D = 4, N = 3: bottom 3-8-4 (24 + 32), top reads 4 + 3 = 7 -> 6 -> 1 (42 + 6),
    # Gram of 3 vectors of 4: 36. Training = 3 x forward = 6 x MACs.
    count = flops_per_sample(2, 4, (8, 4), (6, 1), 3)
    assert (count.bottom_mlp_macs, count.top_mlp_macs, count.interaction_macs) == (56, 48, 36)
    assert count.training_flops == 6 * (56 + 48 + 36)


def test_step_matmuls_are_the_counted_flops_with_the_step_layouts() -> None:
    # F = 2, D = 4, N = 3, B = 5: bottom 3-8-4, top 7-6-1 (as above).
    shapes = step_matmuls(5, 2, 4, (8, 4), (6, 1), 3)
    count = flops_per_sample(2, 4, (8, 4), (6, 1), 3)
    # Everything counted but the first layer's input gradient (3 x 8), which no one needs.
    assert sum(s.flops for s in shapes) == 5 * (count.training_flops - 2 * 3 * 8)
    by_name = {s.name: s for s in shapes}
    assert "bottom0 3x8 dX" not in by_name and "top0 7x6 dX" in by_name
    for shape in shapes:
        out = shape.product(tf.float32)()
        expected = ([shape.batch] if shape.batch else []) + [shape.m, shape.n]
        assert out.shape == expected, shape.name
    assert by_name["top0 7x6 dW"].m == 7 and by_name["top0 7x6 dW"].k == 5  # X^T dY
    assert by_name["interaction backward"].count == 2


def test_plain_interaction_is_the_lower_triangle_row_by_row() -> None:
    features = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    out = np.asarray(PlainDotInteraction()(features))
    expected = [[f[1] @ f[0], f[2] @ f[0], f[2] @ f[1]] for f in features]
    np.testing.assert_allclose(out, expected)


TINY = [
    "--steps=2",
    "--warmup_steps=1",
    "--window_steps=1",
    "--batch_size=128",
    "--embedding_dim=8",
    "--bottom_mlp_dims=16,8",
    "--top_mlp_dims=16,1",
    "--num_tables=3",
    "--max_rows=500",
    "--matmul_dims=64,32,32",
    "--matmul_repeats=2",
    "--distinct_batches=2",
    "--pipeline_batches=3",
    "--profile_steps=1",
]


def test_tiny_run_reports_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert main([*TINY, "--precisions=fp32,bf16", f"--json={out}"]) == 0
    results = json.loads(out.read_text())
    printed = capsys.readouterr().out

    # F = 3, D = 8, N = 13: bottom 13*16 + 16*8, top (8 + 6)*16 + 16, Gram 4*4*8.
    assert results["flops_per_sample"]["training_flops"] == 6 * (336 + 240 + 128)
    assert results["config"]["cardinalities"] == [500, 500, 500]  # capped Criteo tables
    flops = results["flops_per_sample"]["training_flops"]
    for precision in ("fp32", "bf16"):
        matmul = results["matmul"][precision]
        run = results["precisions"][precision]
        assert matmul["gflops_at_start"] > 0
        assert len(run["matmul_gflops_rounds"]) == 2
        assert matmul["gflops_during_training"] == pytest.approx(
            np.median(run["matmul_gflops_rounds"])
        )
        bound = matmul["gflops_during_training"] * 1e9 / flops
        assert matmul["compute_bound_samples_per_s"] == pytest.approx(bound)
        ours, plain = run["ours_rounds"], run["plain_keras_rounds"]
        assert len(ours) == len(plain) == 2
        assert min(ours + plain) > 0
        assert run["ours_samples_per_s"] == pytest.approx(np.median(ours))
        assert run["ratio_ours_over_plain"] == pytest.approx(np.median(np.divide(ours, plain)))
        assert run["ratio_of_medians"] == pytest.approx(np.median(ours) / np.median(plain))
        assert run["ours_fraction_of_bound"] == pytest.approx(np.median(ours) / bound)
        shapes = run["shapes_bound_rounds"]
        assert len(shapes) == 2 and min(shapes) > 0
        assert run["shapes_bound_samples_per_s"] == pytest.approx(np.median(shapes))
        assert run["ours_fraction_of_shapes_bound"] == pytest.approx(
            np.median(ours) / np.median(shapes)
        )
        assert len(run["shapes_ms"]) == 3 * 4 - 1 + 2  # 4 layers, 2 interaction products
        parts = run["profile"]["part_ms"]
        assert parts["backward (difference)"] == pytest.approx(
            parts["forward + backward"] - parts["forward + loss"]
        )
        assert min(v for k, v in parts.items() if "difference" not in k) > 0
        assert {row["name"] for row in run["profile"]["op_types"]["by_phase"]} >= {
            "forward",
            "backward",
        }
        assert f"\n{precision} " in printed
    targets = results["targets"]
    assert set(targets) == {
        "fp32_ours_over_plain_keras",
        "bf16_ours_over_plain_keras",
        "fp32_ours_over_bound",
        "bf16_ours_over_bound",
        "pipeline_over_fastest_step",
    }
    assert targets["bf16_ours_over_plain_keras"]["target"] == 1.5
    assert targets["fp32_ours_over_bound"]["target"] == 0.85
    fastest = max(r["ours_samples_per_s"] for r in results["precisions"].values())
    assert targets["pipeline_over_fastest_step"]["value"] == pytest.approx(
        results["pipeline_samples_per_s"] / fastest
    )
    for name, target in targets.items():
        assert target["met"] == (target["value"] >= target["target"])
        assert f"target {name}: " in printed
    assert results["machine"]["logical_cpus"] >= 1 and results["machine"]["tensorflow"]
    assert "\nmachine: " in printed and "\nsoftware: Python " in printed


@pytest.mark.parametrize(
    "bad",
    [
        ["--precisions=fp64"],
        ["--steps=5", "--window_steps=2"],
        ["--num_tables=27"],
        ["--processes=-1"],
        ["--proc=2"],  # no abbreviations: --processes hands the flags on verbatim
    ],
)
def test_invalid_arguments_are_refused(bad: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(bad)
    assert "error" in capsys.readouterr().err


def test_child_argv_drops_the_parent_flags_only() -> None:
    argv = ["--steps=2", "--processes", "3", "--json", "out.json", "--xla", "--processes=2"]
    assert child_argv([*argv, "--json=x.json", "--seed", "1"]) == [
        "--steps=2",
        "--xla",
        "--seed",
        "1",
    ]


def _child(ours: list[float], plain: list[float]) -> dict:
    return {
        "precisions": {
            "fp32": {
                "ours_rounds": ours,
                "plain_keras_rounds": plain,
                "ours_samples_per_s": float(np.median(ours)),
                "plain_keras_samples_per_s": float(np.median(plain)),
                "ratio_ours_over_plain": float(np.median(np.divide(ours, plain))),
            }
        }
    }


def test_spread_over_processes_by_hand() -> None:
    runs = [_child([10, 12, 11], [8, 8, 9]), _child([6, 7, 7], [7, 7, 7]), _child([11], [8])]
    fp32 = summarize_processes(runs)["fp32"]
    assert fp32["ours"] == {"min": 7, "median": 11, "max": 11, "per_process": [11, 7, 11]}
    assert fp32["plain_keras"] == {"min": 7, "median": 8, "max": 8, "per_process": [8, 7, 8]}
    assert fp32["ratio_of_medians"] == 11 / 8
    # Per-round ratios of the first child: 1.25, 1.5, 11/9 -> median 1.25.
    assert fp32["in_process_ratio"]["per_process"] == [1.25, 1.0, 11 / 8]
    assert fp32["in_process_ratio"]["median"] == 1.25
    assert fp32["rounds_max_over_min"] == {"ours": [1.2, 7 / 6, 1.0], "plain_keras": [9 / 8, 1, 1]}
    table = format_processes(summarize_processes(runs), 3)
    assert "fp32      ours                 7        11       11     1.57            1.20" in table
    assert "ratio of medians 1.38; in-process ratios min 1.00, median 1.25, max 1.38" in table
    # Slowest 7 over fastest 11 = 0.64 < 0.85; ratio of medians 1.38 >= 1.2.
    slowest = fp32["targets"]["slowest_over_fastest"]
    assert slowest == {"target": 0.85, "value": 7 / 11, "met": False}
    assert fp32["targets"]["ratio_of_medians"]["met"] is True
    assert "fp32      target slowest_over_fastest: 0.64 (>= 0.85) NOT MET" in table


def test_processes_run_fresh_children_and_spread_their_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "over.json"
    tiny = [*TINY, "--profile_steps=0", "--precisions=fp32"]
    assert main([*tiny, "--processes", "2", f"--json={out}"]) == 0
    results = json.loads(out.read_text())
    printed = capsys.readouterr().out
    runs = results["runs"]
    assert results["processes"] == 2 and len(runs) == 2
    for run in runs:  # each child ran the tiny configuration, rounds and all
        assert run["config"]["cardinalities"] == [500, 500, 500]
        assert len(run["precisions"]["fp32"]["ours_rounds"]) == 2
        assert run["machine"]["cpu_model"] == results["machine"]["cpu_model"]
    fp32 = results["over_processes"]["fp32"]
    for name in ("ours", "plain_keras"):
        medians = [run["precisions"]["fp32"][f"{name}_samples_per_s"] for run in runs]
        spread = fp32[name]
        assert spread["per_process"] == medians
        assert (spread["min"], spread["max"]) == (min(medians), max(medians))
        assert spread["median"] == pytest.approx(np.median(medians))
        assert spread["min"] <= spread["median"] <= spread["max"]
    assert fp32["ratio_of_medians"] == pytest.approx(
        fp32["ours"]["median"] / fp32["plain_keras"]["median"]
    )
    assert printed.count("--- process ") == 2
    assert "over 2 fresh processes" in printed and "\nmachine: " in printed
    assert "fp32      ours / plain Keras: ratio of medians" in printed


def test_failing_child_is_reported_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # every child exits 1
    assert main([*TINY, "--processes=2"]) == 1
    assert capsys.readouterr().err == "error: --processes: process 1 of 2 exited with 1\n"


def test_the_config_takes_every_flag_named_like_a_field() -> None:
    from tools.bench.train.cli import _parse_args
    from tools.bench.train.setup import config_from_args

    config = config_from_args(
        _parse_args(["--num_tables=2", "--max_rows=9", "--xla", "--pipeline_batches=3", "--seed=4"])
    )
    assert config.cardinalities == (9, 9)
    assert (config.xla, config.pipeline_batches, config.seed) == (True, 3, 4)
    assert config.model_type == "dlrm"  # no such flag here: the field's default
