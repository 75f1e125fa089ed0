"""`main([...])` end to end on tiny synthetic data, single process.

train (with evaluations, checkpoint, export) -> eval reproduces the last
in-training AUC -> inference prints latency percentiles -> the exported
SavedModel, loaded in a process without this repository, predicts what the
restored model predicts. Plus: a resumed run ends with the weights of an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlrm_main
from models.config import ConfigError
from models.run import model as run_model
from models.run import modes as run_modes
from models.run.budget import plan_tables
from models.run.checks import check_launcher
from models.run.model import build_model
from models.run.xla import xla_mode
from tests.samples import SAMPLES_DIR

REPO_ROOT = Path(dlrm_main.__file__).resolve().parent

CARDINALITIES = [3, 7, 11, 20, 50, 100] * 4 + [5, 9]
TINY = [
    "--dataset_type=synthetic",
    "--synthetic_dataset_cardinalities=" + ",".join(map(str, CARDINALITIES)),
    "--synthetic_dataset_train_batches=24",
    "--synthetic_dataset_valid_batches=4",
    "--batch_size=128",
    "--valid_batch_size=128",
    "--embedding_dim=8",
    "--bottom_mlp_dims=16,8",
    "--top_mlp_dims=16,1",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--warmup_steps=2",
    "--decay_start_step=30",
    "--decay_steps=30",
    "--print_freq=8",
    "--seed=7",
]


def _main(*args: str) -> dict:
    return dlrm_main.main(["dlrm_main.py", *TINY, *args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("run")
    args = {
        "log": root / "train_log.json",
        "ckpt": root / "ckpt",
        "export": root / "saved_model",
    }
    results = _main(
        "--epochs=2",
        "--evals_per_epoch=2",
        f"--log_path={args['log']}",
        f"--save_checkpoint_path={args['ckpt']}",
        "--checkpoint_every_n_steps=20",
        f"--export_saved_model_path={args['export']}",
        "--use_performance",
    )
    return {"root": root, "results": results, **args}


def _log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_learns_and_logs(trained) -> None:
    results = trained["results"]
    assert results["steps"] == 48
    # The synthetic labels are a known function of the features: a model that
    # learned nothing scores 0.5.
    assert results["auc"] > 0.6, results
    assert results["best_auc"] >= results["auc"]
    assert results["throughput"] > 0 and results["mean_step_time_ms"] > 0
    lines = _log_lines(trained["log"])
    aucs = [e for e in lines if e["type"] == "LOG" and "auc" in e["data"]]
    assert [e["step"] for e in aucs] == [12, 24, 36, 48]
    progress = [e["step"] for e in lines if e["type"] == "LOG" and "loss" in e["data"]]
    assert progress == [8, 16, 24, 32, 40, 48]
    assert lines[-1]["type"] == "RESULT" and lines[-1]["data"]["auc"] == results["auc"]
    config = json.loads(trained["log"].with_suffix(".config.json").read_text())
    assert config["data"]["batch_size"] == 128
    timing = json.loads((trained["root"] / "train_log.step_times.json").read_text())
    assert timing["steps_measured"] == 48 and timing["p99_ms"] >= timing["p50_ms"]
    # Periodic (20, 40) and final (48) checkpoints; the latest three are kept.
    assert sorted(p.name for p in trained["ckpt"].iterdir()) == [
        "ckpt-000000020",
        "ckpt-000000040",
        "ckpt-000000048",
    ]


def test_eval_reproduces_the_last_training_auc(trained) -> None:
    results = _main(
        "--mode=eval",
        f"--restore_checkpoint_path={trained['ckpt']}",
        f"--log_path={trained['root'] / 'eval_log.json'}",
        "--print_freq=2",
    )
    assert results["step"] == 48
    progress = [
        (e["step"], e["data"]["eval_batches_done"], e["data"]["eval_batches_total"])
        for e in _log_lines(trained["root"] / "eval_log.json")
        if "eval_batches_done" in e["data"]
    ]
    assert progress == [(48, 2, 4), (48, 4, 4)]
    assert results["auc"] == pytest.approx(trained["results"]["auc"], abs=1e-6)
    assert results["validation_loss"] == pytest.approx(
        trained["results"]["validation_loss"], rel=1e-5
    )


def test_inference_reports_latency_percentiles(trained, capsys, monkeypatch) -> None:
    from models.data.synthetic import SyntheticDataset

    reads = []
    as_dataset = SyntheticDataset.as_dataset

    def counted(self, *args, **kwargs):
        reads.append(1)
        return as_dataset(self, *args, **kwargs)

    monkeypatch.setattr(SyntheticDataset, "as_dataset", counted)
    results = _main(
        "--mode=inference",
        "--max_steps=12",
        "--benchmark_warmup_steps=2",
        f"--restore_checkpoint_path={trained['ckpt']}",
        f"--log_path={trained['root'] / 'inference_log.json'}",
    )
    # The 4 test batches are read once and replayed for the 12 steps.
    assert len(reads) == 1 and results["replayed_batches"] == 4
    assert results["latency_includes_input"] is False
    assert results["inference_steps"] == 10
    latencies = [results[f"p{q}_latency_ms"] for q in (50, 90, 95, 99)]
    assert latencies == sorted(latencies) and latencies[0] > 0
    assert results["throughput"] > 0
    printed = capsys.readouterr().out
    for name in ("p50_latency_ms", "p90_latency_ms", "p95_latency_ms", "p99_latency_ms"):
        assert name in printed
    # --print_freq=8: one progress line, at step 8 of 12.
    assert "inference_batches_done: 8 | inference_batches_total: 12" in printed
    assert printed.count("inference_batches_done") == 1


def _restored_model_predictions(
    ckpt: Path, numerical, categorical, model_type: str = "dlrm", **cross
) -> np.ndarray:
    import tensorflow as tf

    from models.distributed.comm import LocalCommunicator
    from models.model_types import MODEL_TYPES
    from models.training.checkpoint import TrainingState, restore_checkpoint

    model = MODEL_TYPES[model_type](
        CARDINALITIES, embedding_dim=8, bottom_mlp_dims=(16, 8), top_mlp_dims=(16, 1), **cross
    )
    restore_checkpoint(ckpt, TrainingState(model, range(len(CARDINALITIES))), LocalCommunicator())
    logits = model({"numerical": numerical, "categorical": categorical})
    return tf.sigmoid(logits).numpy()


def _inputs_and_served_predictions(export: Path, work: Path) -> tuple[np.ndarray, ...]:
    """Random inputs and what the SavedModel at ``export`` predicts for them, computed
    in a fresh interpreter outside the repository (only TensorFlow and the files)."""
    rng = np.random.default_rng(0)
    numerical = rng.normal(size=(16, 13)).astype(np.float32)
    categorical = np.stack([rng.integers(0, n, 16) for n in CARDINALITIES], 1).astype(np.int32)
    inputs = work / "inputs.npz"
    np.savez(inputs, numerical=numerical, categorical=categorical)
    script = textwrap.dedent(
        f"""
        import numpy as np, tensorflow as tf
        data = np.load({str(inputs)!r})
        loaded = tf.saved_model.load({str(export)!r})
        out = loaded.signatures["serving_default"](
            numerical=tf.constant(data["numerical"]), categorical=tf.constant(data["categorical"]))
        np.save({str(work / "served.npy")!r}, out["probability"].numpy())
        """
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=work,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=True,
        timeout=120,
    )
    return numerical, categorical, np.load(work / "served.npy")


def test_exported_saved_model_predicts_like_the_checkpoint(trained) -> None:
    numerical, categorical, served = _inputs_and_served_predictions(
        trained["export"], trained["root"]
    )
    expected = _restored_model_predictions(trained["ckpt"], numerical, categorical)
    assert served.shape == (16, 1)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


DCNV2 = ["--model_type=dcnv2", "--num_cross_layers=2", "--cross_layer_projection_dim=8"]


def test_dcnv2_trains_evaluates_exports_and_is_not_restored_as_dlrm(tmp_path) -> None:
    results = _main(
        *DCNV2,
        "--epochs=1",
        "--evals_per_epoch=1",
        f"--log_path={tmp_path / 'log.json'}",
        f"--save_checkpoint_path={tmp_path / 'ckpt'}",
        f"--export_saved_model_path={tmp_path / 'export'}",
    )
    assert results["steps"] == 24 and 0.6 < results["auc"] <= 1.0
    # No model flag: the checkpoint says DCNv2 and its cross dims.
    evaluated = _main(
        "--mode=eval",
        f"--restore_checkpoint_path={tmp_path / 'ckpt'}",
        f"--log_path={tmp_path / 'eval.json'}",
    )
    assert evaluated["auc"] == pytest.approx(results["auc"], abs=1e-6)
    signature = json.loads((tmp_path / "export" / "dlrm_signature.json").read_text())
    assert signature["model_type"] == "dcnv2"
    numerical, categorical, served = _inputs_and_served_predictions(tmp_path / "export", tmp_path)
    expected = _restored_model_predictions(
        tmp_path / "ckpt",
        numerical,
        categorical,
        "dcnv2",
        num_cross_layers=2,
        cross_layer_projection_dim=8,
    )
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    # Asking for the other model fails at start, naming both types.
    contradiction = r"--model_type dlrm contradicts the checkpoint .*\(dcnv2\)"
    with pytest.raises(ConfigError, match=contradiction):
        _main(
            "--mode=eval",
            "--model_type=dlrm",
            f"--restore_checkpoint_path={tmp_path / 'ckpt'}",
            f"--log_path={tmp_path / 'eval_dlrm.json'}",
        )


def _checkpoint_arrays(directory: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(directory)): np.load(p) for p in sorted(directory.rglob("*.npy"))}


@pytest.mark.parametrize(
    ("optimizer", "model"),
    [("adam", []), ("sgd", []), ("adam", DCNV2)],
    ids=["adam", "sgd", "dcnv2"],
)
def test_resumed_run_matches_an_uninterrupted_run(tmp_path, optimizer: str, model) -> None:
    # sgd: the reference optimizer, whose table update is XLA-compiled on CPU.
    common = [
        "--skip_eval",
        "--epochs=2",
        "--synthetic_dataset_train_batches=6",
        f"--optimizer={optimizer}",
        *model,
    ]
    _main(*common, f"--save_checkpoint_path={tmp_path / 'a'}", f"--log_path={tmp_path / 'a.json'}")
    _main(
        *common,
        "--max_steps=8",
        f"--save_checkpoint_path={tmp_path / 'b'}",
        f"--log_path={tmp_path / 'b.json'}",
    )
    _main(
        *common,
        f"--restore_checkpoint_path={tmp_path / 'b'}",
        f"--save_checkpoint_path={tmp_path / 'b'}",
        f"--log_path={tmp_path / 'b.json'}",
    )
    uninterrupted = _checkpoint_arrays(tmp_path / "a" / "ckpt-000000012")
    resumed = _checkpoint_arrays(tmp_path / "b" / "ckpt-000000012")
    assert uninterrupted.keys() == resumed.keys() and len(uninterrupted) > 26
    for name, value in uninterrupted.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_missing_dataset_and_checkpoint_are_reported_without_a_traceback(tmp_path) -> None:
    missing = tmp_path / "none"
    for flags, expected in [
        (
            ["--dataset_type=raw", f"--dataset_path={missing}"],
            f"dlrm_main.py: dataset directory {missing} does not exist",
        ),
        ([f"--restore_checkpoint_path={missing}"], f"dlrm_main.py: {missing} does not exist"),
    ]:
        done = subprocess.run(
            [sys.executable, "dlrm_main.py", *TINY, *flags, f"--log_path={tmp_path / 'l.json'}"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2 and expected in done.stderr, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_resuming_mid_epoch_with_another_batch_size_is_refused(tmp_path) -> None:
    from models.training.checkpoint import CheckpointError

    ckpt, log = f"--save_checkpoint_path={tmp_path}", f"--log_path={tmp_path / 'log.json'}"
    _main("--skip_eval", "--max_steps=3", ckpt, log)
    with pytest.raises(CheckpointError, match="global batch size of 128; resuming with 64"):
        _main(
            "--skip_eval",
            "--batch_size=64",
            "--valid_batch_size=64",
            f"--restore_checkpoint_path={tmp_path}",
            log,
        )


def test_horovodrun_without_use_horovod_is_refused() -> None:
    with pytest.raises(ConfigError, match="--use_horovod is not set"):
        check_launcher(False, {"HOROVOD_SIZE": "2"})
    check_launcher(True, {"HOROVOD_SIZE": "2"})
    check_launcher(False, {"HOROVOD_SIZE": "1"})


def test_xla_compiles_the_whole_step_only_without_collectives(caplog) -> None:
    import tensorflow as tf

    from models.device import DeviceSetup

    cpu = DeviceSetup("cpu", (), "/device:CPU:0", "float32", None)
    assert xla_mode(False, 1, cpu) == xla_mode(False, 8, cpu) == "off"
    with caplog.at_level("WARNING"):
        assert xla_mode(True, 1, cpu) == "step"
        assert "bfloat16" not in caplog.text
        bf16 = DeviceSetup("cpu", (), "/device:CPU:0", "mixed_bfloat16", None)
        assert xla_mode(True, 1, bf16) == "step"
        assert "drop --enable_xla for bfloat16 training on CPU" in caplog.text
    try:
        assert xla_mode(True, 2, cpu) == "auto"
        assert tf.config.optimizer.get_jit() == "autoclustering"
    finally:
        tf.config.optimizer.set_jit(False)


@pytest.mark.parametrize("amp", [False, True])
def test_an_xla_compiled_step_trains_like_the_plain_step(tmp_path, amp: bool) -> None:
    # --enable_xla on one process compiles the whole step (lookups, interaction,
    # sparse updates); it must train to the same losses as the uncompiled step.
    args = ["--max_steps=6", "--skip_eval", "--print_freq=1", *(["--amp"] if amp else [])]
    plain = _main(*args, f"--log_path={tmp_path / 'plain.json'}")
    compiled = _main(*args, "--enable_xla", f"--log_path={tmp_path / 'xla.json'}")
    assert compiled["steps"] == plain["steps"] == 6
    losses = [
        [line["data"]["loss"] for line in _log_lines(tmp_path / name) if "loss" in line["data"]]
        for name in ("plain.json", "xla.json")
    ]
    assert len(losses[0]) == len(losses[1]) >= 6
    np.testing.assert_allclose(losses[1], losses[0], rtol=2e-2 if amp else 1e-4)


def test_invalid_flags_fail_before_any_work(tmp_path) -> None:
    with pytest.raises(ConfigError, match="--valid_batch_size"):
        dlrm_main.main(["dlrm_main.py", "--dataset_type=synthetic", "--batch_size=64"])
    assert not list(tmp_path.iterdir())


def _two_ranks(*args: str) -> subprocess.CompletedProcess:
    """``horovodrun -np 2 dlrm_main.py`` on the tiny synthetic data; fails if it fails."""
    horovodrun = Path(sys.executable).parent / "horovodrun"
    if importlib.util.find_spec("horovod") is None or not horovodrun.exists():
        pytest.skip("Horovod is not installed in this environment")
    command = [
        str(horovodrun),
        "-np",
        "2",
        "--gloo",
        sys.executable,
        "dlrm_main.py",
        "--use_horovod",
        *TINY,
        # Thread pools are fixed by a process' first op: Horovod's start-up must not run one.
        "--intra_op_parallelism=1",
        "--inter_op_parallelism=1",
        *args,
    ]
    env = {**os.environ, "PATH": f"{horovodrun.parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.horovod
@pytest.mark.slow
def test_two_ranks_train_and_one_process_evaluates_the_checkpoint(tmp_path) -> None:
    log = tmp_path / "hvd_log.json"
    _two_ranks(
        "--max_steps=16",
        "--evals_per_epoch=2",
        f"--log_path={log}",
        f"--save_checkpoint_path={tmp_path / 'ckpt'}",
    )
    result = next(e for e in _log_lines(log) if e["type"] == "RESULT")["data"]
    assert result["steps"] == 16 and 0.5 < result["auc"] < 1.0
    # Only rank 0 writes the log: one progress line per print step.
    progress = [e["step"] for e in _log_lines(log) if e["type"] == "LOG" and "loss" in e["data"]]
    assert progress == [8, 16]
    # The checkpoint of 2 ranks restored in one process gives the same AUC.
    evaluated = _main(
        "--mode=eval",
        f"--restore_checkpoint_path={tmp_path / 'ckpt'}",
        f"--log_path={tmp_path / 'eval_log.json'}",
    )
    assert evaluated["auc"] == pytest.approx(result["auc"], abs=1e-6)


@pytest.mark.horovod
@pytest.mark.slow
def test_two_ranks_replay_the_inference_split_and_rank_0_alone_reports(tmp_path) -> None:
    log = tmp_path / "inference.json"
    done = _two_ranks(
        "--mode=inference",
        "--max_steps=10",
        "--benchmark_warmup_steps=2",
        "--print_freq=4",
        f"--log_path={log}",
    )
    result = next(e for e in _log_lines(log) if e["type"] == "RESULT")["data"]
    # Both ranks read their slice of the 4 test batches once and replayed them together.
    assert result["replayed_batches"] == 4 and result["inference_steps"] == 8
    # Progress at steps 4 and 8, printed by rank 0 only (4 lines if rank 1 printed too).
    assert done.stdout.count("inference_batches_done") == 2, done.stdout[-3000:]


def test_real_criteo_rows_are_learned(tmp_path) -> None:
    """Kaggle's first 1,999 rows: preprocess, train 8 epochs, held-out AUC well above 0.5."""
    sample = SAMPLES_DIR / "kaggle_train_head.tsv"
    dataset = tmp_path / "criteo"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "preproc", "--input_files", str(sample)),
            *("--output_dir", str(dataset), "--frequency_threshold", "2", "--num_workers", "1"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = dlrm_main.main(
        [
            "dlrm_main.py",
            f"--dataset_path={dataset}",
            "--batch_size=128",
            "--valid_batch_size=128",
            "--embedding_dim=8",
            "--bottom_mlp_dims=32,8",
            "--top_mlp_dims=32,16,1",
            "--optimizer=adagrad",
            "--learning_rate=0.05",
            "--warmup_steps=0",
            "--decay_start_step=0",
            "--decay_steps=0",
            "--epochs=8",
            f"--log_path={tmp_path / 'log.json'}",
        ]
    )
    # 1,799 training rows (15 batches per epoch), 200 held-out rows (last 10 %).
    assert results["steps"] == 120
    # Measured: 0.685 (seed 12345); a model that learned nothing scores about 0.5.
    assert results["auc"] > 0.6, results


def _write_tiny_dataset(root: Path, test_rows: int) -> None:
    from models.data.writer import SplitArrays, write_dataset

    rng = np.random.default_rng(0)

    def arrays(rows: int) -> SplitArrays:
        categorical = np.stack([rng.integers(0, n, rows) for n in CARDINALITIES], 1)
        return SplitArrays(rng.integers(0, 2, rows), rng.random((rows, 13)), categorical)

    write_dataset(root, {"train": arrays(256), "test": arrays(test_rows)}, CARDINALITIES)


def test_a_one_class_test_split_still_ends_with_a_checkpoint(tmp_path) -> None:
    _write_tiny_dataset(tmp_path / "data", test_rows=64)
    (tmp_path / "data" / "test" / "label.bin").write_bytes(bytes(64))  # all negatives
    flags = [a for a in TINY if not a.startswith(("--dataset_type", "--synthetic"))]
    results = dlrm_main.main(
        [
            "dlrm_main.py",
            *flags,
            f"--dataset_path={tmp_path / 'data'}",
            f"--log_path={tmp_path / 'log.json'}",
            f"--save_checkpoint_path={tmp_path / 'ckpt'}",
        ]
    )
    assert results["auc"] is None and results["validation_loss"] > 0
    assert (tmp_path / "ckpt" / "ckpt-000000002" / "checkpoint.json").is_file()


def test_dataset_problems_are_reported_before_training(tmp_path) -> None:
    _write_tiny_dataset(tmp_path / "data", test_rows=0)
    flags = [a for a in TINY if not a.startswith(("--dataset_type", "--synthetic"))]
    base = ["dlrm_main.py", *flags, f"--dataset_path={tmp_path / 'data'}"]
    log = f"--log_path={tmp_path / 'log.json'}"
    with pytest.raises(ConfigError, match=r"'test' split .* has no rows .*--skip_eval"):
        dlrm_main.main([*base, log])
    with pytest.raises(ConfigError, match="--num_numerical_features=12 but the dataset"):
        dlrm_main.main([*base, log, "--num_numerical_features=12"])
    # Without evaluation the same dataset trains.
    assert dlrm_main.main([*base, log, "--skip_eval"])["steps"] == 2
    _write_tiny_dataset(tmp_path / "short", test_rows=100)
    short = f"--dataset_path={tmp_path / 'short'}"
    with pytest.raises(ConfigError, match=r"has 100 rows, fewer than --valid_batch_size=128"):
        dlrm_main.main([*base, short, log, "--mode=inference", "--max_steps=2"])


def _parameters(log: Path) -> dict:
    return next(
        e["data"] for e in _log_lines(log) if e["step"] == "PARAMETER" and e["type"] == "LOG"
    )


def test_memory_limit_sets_the_placement_budget_in_the_log(tmp_path) -> None:
    log = tmp_path / "log.json"
    _main("--skip_eval", "--max_steps=1", "--tf_mlu_memory_limit_gb=1", f"--log_path={log}")
    placement = _parameters(log)["placement"]
    # Adam keeps two slots next to each table: a third of 3/4 GiB for the weights.
    assert placement["budget_bytes"] == (2**30 * 3 // 4) // 3
    assert placement["bytes_per_rank"] == [sum(CARDINALITIES) * 8 * 4]
    assert placement["tables_per_rank"] == [list(range(len(CARDINALITIES)))]
    assert placement["split_tables"] == {}


def _cardinalities_flag(cardinalities: list[int]) -> str:
    return "--synthetic_dataset_cardinalities=" + ",".join(map(str, cardinalities))


def test_tables_over_the_memory_budget_fail_before_the_model_is_built(
    tmp_path, monkeypatch
) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("the model was built although its tables cannot fit")

    monkeypatch.setattr(run_model, "build_ranking_model", no_model)
    log = f"--log_path={tmp_path / 'log.json'}"
    # 1 GiB with SGD (no slots): 805,306,368 bytes of weights; five tables of
    # 6,000,000 rows x 8 float32 (192,000,000 bytes) each fit, all five do not.
    big = [6_000_000] * 5 + CARDINALITIES[5:]
    with pytest.raises(ConfigError) as raised:
        _main("--tf_mlu_memory_limit_gb=1", "--optimizer=sgd", _cardinalities_flag(big), log)
    message = str(raised.value)
    assert "the embedding tables do not fit: cannot place table 4 (192000000 bytes)" in message
    assert "805306368-byte budget" in message and "0 optimizer slot(s)" in message


def test_a_table_over_the_budget_is_split_by_rows_over_ranks() -> None:
    from models.config import Config, DeviceConfig, ModelConfig
    from models.training.optimizers import make_optimizers

    config = Config(model=ModelConfig(embedding_dim=8), device=DeviceConfig(memory_limit_gb=1))
    _, adam = make_optimizers("adam", 0.1)
    # Table 5: 9,000,000 rows x 8 float32 = 288,000,000 bytes, over the
    # 268,435,456 bytes that 1 GiB leaves for weights with Adam's two slots:
    # two ranks hold its halves.
    huge = (*CARDINALITIES[:5], 9_000_000, *CARDINALITIES[6:])
    placement = plan_tables(config, huge, 2, adam)
    assert placement.split_tables == (5,)
    shards = [(s.row_start, s.row_end, s.rank) for s in placement.shards if s.table == 5]
    assert shards == [(0, 4_500_000, 0), (4_500_000, 9_000_000, 1)]
    assert max(placement.bytes_per_rank) <= placement.budget_bytes == 268_435_456
    # One rank cannot hold both halves: the run stops naming the table and the budget.
    with pytest.raises(ConfigError) as raised:
        plan_tables(config, huge, 1, adam)
    message = str(raised.value)
    assert "table 5 needs more row shards than the 1 rank(s)" in message
    assert "--tf_mlu_memory_limit_gb=1" in message and "2 optimizer slot(s)" in message


def test_evaluation_budget_counts_no_optimizer_slots() -> None:
    from models.config import Config, DeviceConfig, ModelConfig, RunConfig
    from models.training.optimizers import make_optimizers

    config = Config(
        run=RunConfig(mode="eval"),
        model=ModelConfig(embedding_dim=8),
        device=DeviceConfig(memory_limit_gb=1),
    )
    _, adam = make_optimizers("adam", 0.1)
    placement = plan_tables(config, tuple(CARDINALITIES), 2, adam)
    assert placement.budget_bytes == 2**30 * 3 // 4
    assert placement.world_size == 2 and all(placement.bytes_per_rank)
    training = dataclasses.replace(config, run=RunConfig(mode="train"))
    assert (
        plan_tables(training, tuple(CARDINALITIES), 2, adam).budget_bytes == (2**30 * 3 // 4) // 3
    )


def test_step_watchdog_follows_the_flag(tmp_path, monkeypatch) -> None:
    from models.distributed.watchdog import StepWatchdog

    made, events = [], []

    class Recording(StepWatchdog):
        def __init__(self, timeout_s: float, where: str) -> None:
            super().__init__(timeout_s, where, on_timeout=events.append)
            made.append((timeout_s, where))

        def beat(self, step: int) -> None:
            events.append(step)
            super().beat(step)

    monkeypatch.setattr(run_modes, "StepWatchdog", Recording)
    log = f"--log_path={tmp_path / 'log.json'}"
    _main("--skip_eval", "--max_steps=3", "--step_timeout_s=120", log)
    assert made == [(120.0, "rank 0 of 1")] and events == [1, 2, 3]
    _main("--skip_eval", "--max_steps=1", "--step_timeout_s=0", log)
    assert len(made) == 1, "--step_timeout_s=0 must run without a watchdog"
    with pytest.raises(ConfigError, match="--step_timeout_s must be >= 0, got -1"):
        _main("--step_timeout_s=-1", log)


def test_each_rank_allocates_only_the_tables_it_owns() -> None:
    """Model parallelism splits table memory: rank r's model holds its placement only."""
    from models.config import Config, DataConfig, ModelConfig
    from models.distributed.placement import embedding_table_bytes, plan_placement
    from models.run.data import RunData

    class _Rank:  # the communicator attributes the model builder reads
        def __init__(self, rank: int) -> None:
            self.rank, self.size, self.local_rank = rank, 2, 0

    cards = tuple(CARDINALITIES)
    config = Config(
        data=DataConfig(dataset_type="synthetic", synthetic_cardinalities=cards),
        model=ModelConfig(embedding_dim=8, bottom_mlp_dims=(16, 8), top_mlp_dims=(4, 1)),
    )
    placement = plan_placement(embedding_table_bytes(cards, 8), 2)
    held_bytes = []
    for rank in (0, 1):
        data = RunData(config, rank, 2)
        model, parallel = build_model(config, data, _Rank(rank), placement)
        assert model.held_tables == tuple(sorted(placement.tables_per_rank[rank]))
        assert parallel.owned_tables == placement.tables_per_rank[rank]
        tables = [w for w in model.weights if "embedding" in w.path]
        held_bytes.append(sum(int(np.prod(w.shape)) * 4 for w in tables))
    assert held_bytes == list(placement.bytes_per_rank)
    assert sum(held_bytes) == sum(embedding_table_bytes(cards, 8))


def test_a_bad_id_found_mid_run_is_reported_by_file_and_row(tmp_path) -> None:
    """The reader's DatasetError crosses tf.data; the command line still names file and row."""
    _write_tiny_dataset(tmp_path / "data", test_rows=256)
    cat = tmp_path / "data" / "train" / "cat_0.bin"
    ids = np.fromfile(cat, np.int8)
    ids[200] = 120
    ids.tofile(cat)
    flags = [a for a in TINY if not a.startswith(("--dataset_type", "--synthetic"))]
    flags += [f"--dataset_path={tmp_path / 'data'}", "--skip_eval"]
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "dlrm_main.py"), *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dlrm_main.py: ") and "cat_0.bin: row 200 holds id 120" in last


def test_a_profiled_rank_outside_the_job_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"--profiled_rank=1 does not exist in a job of 1 rank"):
        _main("--use_profiler", "--profiled_rank=1", f"--log_path={tmp_path / 'log.json'}")
