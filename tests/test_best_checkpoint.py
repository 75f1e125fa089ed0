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

CARDINALITIES = [5, 9, 17, 64]
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
# All four regularisers, under mixed precision.
REGULARISED = [
    "--dropout=0.2",
    "--embedding_l2=0.01",
    "--embedding_weight_decay=0.5",
    "--dense_weight_decay=0.01",
    "--use_amp",
]
# Adam's two slots: int(3e-6 GiB x 0.75) // 3 = 805 bytes of weights per rank, less than
# table 3 (64 x 4 x 4 = 1024 bytes): it is split by rows over the two ranks.
SPLIT_LIMIT = "--tf_mlu_memory_limit_gb=0.000003"


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


def _arrays(directory: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(directory)): np.load(p) for p in sorted(directory.rglob("*.npy"))}


@pytest.mark.slow  # four runs of main
def test_regularisers_shrink_the_weights_and_resume_with_the_checkpoints_dropout(
    tmp_path,
) -> None:
    _write_noise_dataset(tmp_path / "data")
    common = ["--epochs=2", "--evals_per_epoch=1", "--use_amp"]
    _main(*_args(tmp_path, "plain"), *common, f"--save_checkpoint_path={tmp_path / 'plain'}")
    # The tables shrink by the whole-table decay (lazy L2 is checked in the optimizer tests).
    strong = ["--dropout=0.3", "--embedding_weight_decay=4", "--dense_weight_decay=2"]
    _main(*_args(tmp_path, "reg"), *common, *strong, f"--save_checkpoint_path={tmp_path / 'reg'}")
    plain = _arrays(tmp_path / "plain" / "ckpt-000000008")
    reg = _arrays(tmp_path / "reg" / "ckpt-000000008")
    tables = [k for k in plain if k.startswith("tables/") and k.count(".") == 1]
    kernels = [k for k in plain if k.startswith("dense/") and plain[k].ndim == 2]
    for names in (tables, kernels):
        norm = sum(float(np.square(plain[k]).sum()) for k in names)
        assert sum(float(np.square(reg[k]).sum()) for k in names) < 0.8 * norm
    record = json.loads((tmp_path / "reg" / "ckpt-000000008" / "checkpoint.json").read_text())
    assert record["model_config"]["dropout"] == 0.3
    # A resumed run takes the dropout from the checkpoint; eval needs no flag either.
    _main(
        *_args(tmp_path, "resumed"),
        "--epochs=3",
        "--use_amp",
        f"--restore_checkpoint_path={tmp_path / 'reg'}",
        f"--save_checkpoint_path={tmp_path / 'reg'}",
    )
    config = json.loads((tmp_path / "resumed.config.json").read_text())
    assert config["model"]["dropout"] == 0.3
    evaluated = _main(
        *_args(tmp_path, "eval"), "--mode=eval", f"--restore_checkpoint_path={tmp_path / 'reg'}"
    )
    assert evaluated["step"] == 12 and 0 < evaluated["auc"] < 1
    with pytest.raises(ConfigError, match=r"--dropout must be in \[0, 1\), got 1.0"):
        _main(*_args(tmp_path, "bad"), "--dropout=1")
    with pytest.raises(ConfigError, match=r"--embedding_weight_decay \(20.0\) times"):
        _main(*_args(tmp_path, "bad"), "--embedding_weight_decay=20")


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
@pytest.mark.slow  # horovodrun start-up, then an evaluated run of up to 40 steps
def test_two_ranks_stop_together_and_keep_the_best_checkpoint(tmp_path) -> None:
    """Rank 0 holds the AUC; both ranks must save the best and stop at the same step.

    With the regularisers, mixed precision and a table split by rows over the ranks.
    """
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
        *REGULARISED,
        SPLIT_LIMIT,
    )
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps([args]))
    run_horovod(["-np", "2", "--gloo"], ["-m", "tests.distributed.main_sequence", str(runs)], 400)
    results = _result(tmp_path / "hvd.json")
    lines = [json.loads(line) for line in (tmp_path / "hvd.json").read_text().splitlines()]
    parameters = next(e["data"] for e in lines if e["step"] == "PARAMETER" and e["type"] == "LOG")
    assert parameters["world_size"] == 2
    assert parameters["placement"]["split_tables"] == {"3": [[0, 32, 0], [32, 64, 1]]}
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
