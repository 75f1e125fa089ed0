"""tools.bench.models: DCNv2's FLOP count by hand and a tiny run of both models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools.bench.models import main
from tools.bench.train import dcnv2_flops_per_sample


def test_mlperf_dcnv2_flops_per_sample_by_hand() -> None:
    # x0 = 27 x 128 = 3456 wide; a rank-512 cross layer is 3456x512 then 512x3456.
    bottom = 13 * 512 + 512 * 256 + 256 * 128
    cross = 3 * (3456 * 512 + 512 * 3456)
    top = 3456 * 1024 + 1024 * 1024 + 1024 * 512 + 512 * 256 + 256 * 1
    count = dcnv2_flops_per_sample(26, 128, (512, 256, 128), (1024, 1024, 512, 256, 1), 3, 512)
    assert (count.bottom_mlp_macs, count.interaction_macs, count.top_mlp_macs) == (
        bottom,
        cross,
        top,
    )
    assert count.training_flops == 6 * (170_496 + 10_616_832 + 5_243_136) == 96_182_784
    full = dcnv2_flops_per_sample(26, 128, (512, 256, 128), (1024, 1024, 512, 256, 1), 3, 0)
    assert full.interaction_macs == 3 * 3456 * 3456


def test_tiny_run_reports_both_models_against_their_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bench.json"
    args = [
        "--steps=2",
        "--warmup_steps=1",
        "--window_steps=1",
        "--batch_size=64",
        "--embedding_dim=4",
        "--bottom_mlp_dims=8,4",
        "--top_mlp_dims=8,1",
        "--num_cross_layers=2",
        "--cross_layer_projection_dim=3",
        "--num_tables=3",
        "--max_rows=100",
        "--matmul_dims=32,32,32",
        "--distinct_batches=2",
        "--precisions=fp32",
        f"--json={out}",
    ]
    assert main(args) == 0
    results = json.loads(out.read_text())
    assert "machine" in results  # what the figures were measured on
    # F = 3, D = 4, N = 13: x0 is 16 wide; bottom 13*8 + 8*4 = 136.
    # DLRM: top reads 4 + 6 = 10 -> 8 -> 1 (88), Gram 4*4*4 = 64.
    # DCNv2: cross 2 * (16*3 + 3*16) = 192, top reads 16 -> 8 -> 1 (136).
    assert results["flops_per_sample"]["dlrm"]["training_flops"] == 6 * (136 + 88 + 64)
    assert results["flops_per_sample"]["dcnv2"]["training_flops"] == 6 * (136 + 192 + 136)
    run = results["precisions"]["fp32"]
    gflops = np.median(run["rounds"]["matmul_gflops"])
    assert run["gflops_during_training"] == pytest.approx(gflops)
    for model_type in ("dlrm", "dcnv2"):
        rounds = run["rounds"][model_type]
        entry = run["models"][model_type]
        assert len(rounds) == 2 and min(rounds) > 0
        bound = gflops * 1e9 / results["flops_per_sample"][model_type]["training_flops"]
        assert entry["compute_bound_samples_per_s"] == pytest.approx(bound)
        assert entry["fraction_of_bound"] == pytest.approx(np.median(rounds) / bound)
    ratios = np.divide(run["rounds"]["dcnv2"], run["rounds"]["dlrm"])
    assert run["dcnv2_over_dlrm"] == pytest.approx(np.median(ratios))
    printed = capsys.readouterr().out
    assert "fp32      dcnv2" in printed and "DCNv2 / DLRM samples/s" in printed


@pytest.mark.parametrize(
    "bad", [["--precisions=fp64"], ["--num_cross_layers=0"], ["--cross_layer_projection_dim=-1"]]
)
def test_invalid_arguments_are_refused(bad: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(bad)
    assert "error" in capsys.readouterr().err
