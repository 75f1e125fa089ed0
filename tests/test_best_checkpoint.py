"""The kept best checkpoint and early stopping, end to end through `main([...])`.

The data have labels unrelated to the features, so the evaluation AUC only
wanders around 0.5 as training goes on: it cannot keep improving, which makes
the early stop certain, while where the best falls depends on the CPU's
arithmetic. The tests therefore check what must hold wherever it falls.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dlrm_main
from models.config import ConfigError
from models.data.writer import SplitArrays, write_dataset
from tests.distributed.horovod_launch import HOROVOD_MARKS, run_horovod

CARDINALITIES = [5, 9, 17, 33]
MODEL = [
    "--batch_size=64",
    "--valid_batch_size=64",
    "--embedding_dim=4",
    "--bottom_mlp_dims=8,4",
    "--top_mlp_dims=8,1",
    "--optimizer=adam",
    "--learning_rate=0.05",
    "--warmup_steps=0",
    "--decay_start_step=0",
    "--decay_steps=0",
    "--print_freq=100",
    "--seed=3",
]
PATIENCE = 2


def _write_noise_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)

    def arrays(rows: int) -> SplitArrays:
        categorical = np.stack([rng.integers(0, n, rows) for n in CARDINALITIES], 1)
        return SplitArrays(rng.integers(0, 2, rows), rng.random((rows, 3)), categorical)

    write_dataset(root, {"train": arrays(256), "test": arrays(256)}, CARDINALITIES)


def _args(root: Path, name: str, *extra: str) -> list[str]:
    return [
        *MODEL,
        f"--dataset_path={root / 'data'}",
        f"--log_path={root / f'{name}.json'}",
        *extra,
    ]


def _main(*args: str) -> dict:
    return dlrm_main.main(["dlrm_main.py", *args])


def _evaluations(log: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [(e["step"], e["data"]["auc"]) for e in lines if "auc" in e.get("data", {})]


def _result(log: Path) -> dict:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return next(e["data"] for e in lines if e["type"] == "RESULT")


def _check_best(root: Path, results: dict, log: Path) -> list[tuple[int, float]]:
    """What the result block, the log and <ckpt>/best must agree on; returns the evaluations."""
    evaluations = [(s, a) for s, a in _evaluations(log) if s != "RESULT"]
    aucs = [auc for _, auc in evaluations]
    assert results["best_auc"] == max(aucs)
    assert results["best_auc_step"] == evaluations[aucs.index(max(aucs))][0]
    best_dir = root / "ckpt" / "best"
    assert results["best_checkpoint"] == str(best_dir)
    saved = json.loads((best_dir / "checkpoint.json").read_text())
    assert saved["step"] == results["best_auc_step"]
    assert saved["best"]["auc"] == results["best_auc"]
    return evaluations


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("best")
    _write_noise_dataset(root / "data")
    results = _main(
        *_args(root, "train"),
        "--epochs=10",
        "--evals_per_epoch=2",  # after every second step: 4 steps per epoch
        f"--save_checkpoint_path={root / 'ckpt'}",
        "--keep_best_checkpoint",
        f"--early_stopping_patience={PATIENCE}",
        f"--export_saved_model_path={root / 'exported'}",
    )
    return {"root": root, "results": results}


def test_training_stops_after_patience_evaluations_without_a_better_auc(stopped) -> None:
    root, results = stopped["root"], stopped["results"]
    assert results["stopped_early"] is True
    evaluations = _check_best(root, results, root / "train.json")
    steps = [s for s, _ in evaluations]
    # The run ends at the PATIENCE-th evaluation after the best one, long before 40 steps.
    assert steps.index(results["best_auc_step"]) == len(steps) - 1 - PATIENCE
    assert results["steps"] == steps[-1] < 40
    assert results["auc"] == evaluations[-1][1]
    # The latest checkpoint is that of the last step, beside the best one.
    latest = json.loads(
        (root / "ckpt" / f"ckpt-{results['steps']:09d}" / "checkpoint.json").read_text()
    )
    assert latest["best"]["evals_without_improvement"] == PATIENCE
    assert _result(root / "train.json")["best_checkpoint"] == results["best_checkpoint"]


def test_eval_of_the_best_checkpoint_reports_the_best_auc(stopped) -> None:
    root, results = stopped["root"], stopped["results"]
    best = _main(
        *_args(root, "eval_best"),
        "--mode=eval",
        f"--restore_checkpoint_path={root / 'ckpt' / 'best'}",
    )
    assert best["step"] == results["best_auc_step"]
    assert best["auc"] == pytest.approx(results["best_auc"], abs=1e-6)
    latest = _main(
        *_args(root, "eval_latest"), "--mode=eval", f"--restore_checkpoint_path={root / 'ckpt'}"
    )
    assert latest["step"] == results["steps"]
    assert latest["auc"] == pytest.approx(results["auc"], abs=1e-6)


def test_the_training_export_holds_the_best_weights(stopped) -> None:
    import tensorflow as tf

    from tools.export import export_checkpoint

    root = stopped["root"]
    export_checkpoint(root / "ckpt" / "best", root / "best_export")
    export_checkpoint(root / "ckpt", root / "latest_export")
    rng = np.random.default_rng(1)
    numerical = tf.constant(rng.random((32, 3)), tf.float32)
    categorical = tf.constant(
        np.stack([rng.integers(0, n, 32) for n in CARDINALITIES], 1), tf.int32
    )

    def served(name: str) -> np.ndarray:
        loaded = tf.saved_model.load(str(root / name))  # referenced while it runs
        return loaded.serve(numerical, categorical)["probability"].numpy()

    np.testing.assert_allclose(served("exported"), served("best_export"), rtol=1e-6)
    # Not the final weights (the run went on PATIENCE evaluations past the best).
    assert not np.allclose(served("exported"), served("latest_export"), rtol=1e-6)


def test_a_resumed_run_keeps_the_best_so_far(stopped) -> None:
    root, first = stopped["root"], stopped["results"]
    results = _main(
        *_args(root, "resumed"),
        "--epochs=12",
        "--evals_per_epoch=2",
        f"--save_checkpoint_path={root / 'ckpt'}",
        f"--restore_checkpoint_path={root / 'ckpt'}",
        "--keep_best_checkpoint",
        f"--early_stopping_patience={PATIENCE + 2}",
    )
    # The restored record counts PATIENCE evaluations already: 2 more end this run,
    # unless one beats the first run's best, which then moves to its step.
    evaluations = _evaluations(root / "resumed.json")
    new = [(s, a) for s, a in evaluations if s != "RESULT" and s > first["steps"]]
    assert results["best_auc"] == max([first["best_auc"], *(a for _, a in new)])
    if results["best_auc"] == first["best_auc"]:
        assert results["best_auc_step"] == first["best_auc_step"] and len(new) == 2
    else:
        assert results["best_auc_step"] > first["steps"]
    saved = json.loads((root / "ckpt" / "best" / "checkpoint.json").read_text())
    assert saved["step"] == results["best_auc_step"]


def test_the_flags_need_evaluations_and_a_checkpoint_path(tmp_path) -> None:
    _write_noise_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match=r"--keep_best_checkpoint needs .*--save_checkpoint_path"):
        _main(*_args(tmp_path, "a"), "--keep_best_checkpoint")
    with pytest.raises(ConfigError, match="--early_stopping_patience=2 needs evaluations"):
        _main(*_args(tmp_path, "b"), "--early_stopping_patience=2", "--skip_eval")
    with pytest.raises(ConfigError, match="--early_stopping_patience must be >= 0"):
        _main(*_args(tmp_path, "c"), "--early_stopping_patience=-1")


@HOROVOD_MARKS[0]
@HOROVOD_MARKS[1]
def test_two_ranks_stop_together_and_keep_the_best_checkpoint(tmp_path) -> None:
    """Rank 0 holds the AUC; both ranks must save the best and stop at the same step."""
    _write_noise_dataset(tmp_path / "data")
    args = _args(
        tmp_path,
        "hvd",
        "--use_horovod",
        "--epochs=10",
        "--evals_per_epoch=2",
        f"--save_checkpoint_path={tmp_path / 'ckpt'}",
        "--keep_best_checkpoint",
        f"--early_stopping_patience={PATIENCE}",
    )
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps([args]))
    run_horovod(["-np", "2", "--gloo"], ["-m", "tests.distributed.main_sequence", str(runs)], 400)
    results = _result(tmp_path / "hvd.json")
    assert results["stopped_early"] is True
    evaluations = _check_best(tmp_path, results, tmp_path / "hvd.json")
    steps = [s for s, _ in evaluations]
    assert steps.index(results["best_auc_step"]) == len(steps) - 1 - PATIENCE
    # The best checkpoint of 2 ranks, evaluated in one process, gives the same AUC.
    best = _main(
        *_args(tmp_path, "eval_best"),
        "--mode=eval",
        f"--restore_checkpoint_path={tmp_path / 'ckpt' / 'best'}",
    )
    assert best["auc"] == pytest.approx(results["best_auc"], abs=1e-6)
