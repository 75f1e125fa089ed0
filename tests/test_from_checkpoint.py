"""A checkpoint describes its model: eval, inference, export and resume need no model flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlrm_main
from models.config import ConfigError
from tests.test_faults import assert_one_line_error, run_main
from tests.test_main import CARDINALITIES, REPO_ROOT, TINY

MODEL_FLAGS = ("--embedding_dim", "--bottom_mlp_dims", "--top_mlp_dims")
# What evaluating needs besides the checkpoint: the data and its batching.
DATA_ONLY = [
    "--dataset_type=synthetic",
    "--synthetic_dataset_valid_batches=4",
    "--batch_size=128",
    "--valid_batch_size=128",
    "--seed=7",  # the synthetic evaluation set's seed
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("trained")
    results = dlrm_main.main(
        [
            "dlrm_main.py",
            *TINY,
            "--max_steps=12",
            f"--log_path={root / 'train.json'}",
            f"--save_checkpoint_path={root / 'ckpt'}",
            f"--export_saved_model_path={root / 'trained_export'}",
        ]
    )
    return {"root": root, "ckpt": root / "ckpt", "results": results}


def test_the_checkpoint_records_the_model_configuration(trained) -> None:
    metadata = json.loads((trained["ckpt"] / "ckpt-000000012" / "checkpoint.json").read_text())
    record = metadata["model_config"]
    assert record["embedding_dim"] == 8
    assert record["bottom_mlp_dims"] == [16, 8] and record["top_mlp_dims"] == [16, 1]
    assert record["num_numerical_features"] == 13
    assert record["cardinalities"] == CARDINALITIES and record["precision"] == "float32"


def test_eval_and_inference_need_no_model_flags(trained) -> None:
    assert not any(a.startswith((*MODEL_FLAGS, "--synthetic_dataset_card")) for a in DATA_ONLY)
    log = f"--log_path={trained['root'] / 'eval.json'}"
    restore = f"--restore_checkpoint_path={trained['ckpt']}"
    evaluated = dlrm_main.main(["dlrm_main.py", *DATA_ONLY, "--mode=eval", restore, log])
    assert evaluated["step"] == 12
    assert evaluated["auc"] == pytest.approx(trained["results"]["auc"], abs=1e-6)
    config = json.loads((trained["root"] / "eval.config.json").read_text())
    assert config["model"]["top_mlp_dims"] == [16, 1]
    inference = dlrm_main.main(
        ["dlrm_main.py", *DATA_ONLY, "--mode=inference", "--max_steps=3", restore, log]
    )
    assert inference["inference_steps"] == 3


def test_a_flag_that_contradicts_the_checkpoint_fails_naming_both_values(trained) -> None:
    restore = f"--restore_checkpoint_path={trained['ckpt']}"
    with pytest.raises(ConfigError) as raised:
        dlrm_main.main(
            [
                "dlrm_main.py",
                *DATA_ONLY,
                "--mode=eval",
                restore,
                "--top_mlp_dims=40,20,1",
                "--embedding_dim=8",
                "--bottom_mlp_dims=32,8",
            ]
        )
    lines = str(raised.value).splitlines()
    directory = trained["ckpt"] / "ckpt-000000012"
    assert lines == [
        f"--bottom_mlp_dims 32,8 contradicts the checkpoint {directory} (16,8)",
        f"--top_mlp_dims 40,20,1 contradicts the checkpoint {directory} (16,1)",
    ]


def test_a_resumed_run_takes_the_model_from_the_checkpoint(trained, tmp_path) -> None:
    flags = [a for a in TINY if not a.startswith(MODEL_FLAGS)]
    results = dlrm_main.main(
        [
            "dlrm_main.py",
            *flags,
            "--max_steps=14",
            "--skip_eval",
            f"--restore_checkpoint_path={trained['ckpt']}",
            f"--save_checkpoint_path={tmp_path / 'ckpt'}",
            f"--log_path={tmp_path / 'log.json'}",
        ]
    )
    assert results["steps"] == 14
    record = json.loads((tmp_path / "ckpt" / "ckpt-000000014" / "checkpoint.json").read_text())
    assert record["model_config"]["bottom_mlp_dims"] == [16, 8]


def test_checkpoints_without_the_record_restore_from_their_dims(trained, tmp_path) -> None:
    old = tmp_path / "old"
    subprocess.run(["cp", "-r", str(trained["ckpt"] / "ckpt-000000012"), str(old)], check=True)
    metadata = json.loads((old / "checkpoint.json").read_text())
    del metadata["model_config"]  # as written before the record existed
    for entry in metadata["arrays"].values():
        entry.pop("crc32")
    (old / "checkpoint.json").write_text(json.dumps(metadata))
    log = f"--log_path={tmp_path / 'eval.json'}"
    for flags in ([], [a for a in TINY if a.startswith(MODEL_FLAGS)]):  # with flags as before
        evaluated = dlrm_main.main(
            [
                "dlrm_main.py",
                *DATA_ONLY,
                *flags,
                "--mode=eval",
                f"--restore_checkpoint_path={old}",
                "--synthetic_dataset_cardinalities=" + ",".join(map(str, CARDINALITIES)),
                log,
            ]
        )
        assert evaluated["auc"] == pytest.approx(trained["results"]["auc"], abs=1e-6)


def _predict(saved_model: Path, numerical, categorical) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    return loaded.serve(tf.constant(numerical), tf.constant(categorical))["probability"].numpy()


def test_tools_export_writes_the_saved_model_from_the_checkpoint_alone(trained) -> None:
    out = trained["root"] / "exported"
    done = subprocess.run(
        [sys.executable, "-m", "tools.export", str(trained["ckpt"]), str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"exported {trained['ckpt'] / 'ckpt-000000012'} to {out}" in done.stdout
    rng = np.random.default_rng(3)
    numerical = rng.normal(size=(32, 13)).astype(np.float32)
    categorical = np.stack([rng.integers(0, n, 32) for n in CARDINALITIES], 1).astype(np.int32)
    np.testing.assert_allclose(
        _predict(out, numerical, categorical),
        _predict(trained["root"] / "trained_export", numerical, categorical),
        rtol=1e-6,
        atol=1e-7,
    )


def test_tools_export_reports_a_damaged_checkpoint_in_one_line(trained, tmp_path) -> None:
    damaged = tmp_path / "ckpt-000000012"
    subprocess.run(["cp", "-r", str(trained["ckpt"] / "ckpt-000000012"), str(damaged)], check=True)
    table = damaged / "tables" / "table_5.npy"
    data = bytearray(table.read_bytes())
    data[-64:] = bytes(64)
    table.write_bytes(bytes(data))
    done = subprocess.run(
        [sys.executable, "-m", "tools.export", str(damaged), str(tmp_path / "out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tools.export: {table}: checksum mismatch (table 5)"), last
    assert not (tmp_path / "out").exists()


def test_unwritable_outputs_fail_before_training(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    log = f"--log_path={tmp_path / 'log.json'}"
    with pytest.raises(ConfigError, match=rf"--export_saved_model_path={blocker} is a file"):
        dlrm_main.main(["dlrm_main.py", *TINY, f"--export_saved_model_path={blocker}", log])
    with pytest.raises(ConfigError, match=rf"--save_checkpoint_path={blocker}/ckpt: cannot write"):
        dlrm_main.main(["dlrm_main.py", *TINY, f"--save_checkpoint_path={blocker}/ckpt", log])
    assert not (tmp_path / "log.json").exists()  # nothing ran


def test_a_read_only_checkpoint_directory_fails_at_start_in_one_line(tmp_path) -> None:
    done = run_main(*TINY, f"--save_checkpoint_path={tmp_path / 'f' / 'c'}", cwd=tmp_path)
    assert done.returncode == 0  # the ordinary case writes
    (tmp_path / "file").write_text("")
    done = run_main(*TINY, f"--save_checkpoint_path={tmp_path / 'file' / 'c'}", cwd=tmp_path)
    assert_one_line_error(done, f"--save_checkpoint_path={tmp_path / 'file' / 'c'}: cannot write")


def test_adoption_takes_precision_and_tables_unless_given() -> None:
    from models.config import Config, DataConfig
    from models.run.checkpoint_model import adopt_checkpoint_model

    record = {"embedding_dim": 8, "cardinalities": [4] * 26, "precision": "mixed_bfloat16"}
    base = Config(data=DataConfig(dataset_type="synthetic", batch_size=8, valid_batch_size=8))
    adopted = adopt_checkpoint_model(base, {**record, "bottom_mlp_dims": [8]}, frozenset(), "C")
    assert adopted.device.use_amp and adopted.data.synthetic_cardinalities == (4,) * 26
    assert adopted.model.embedding_dim == 8 and adopted.model.bottom_mlp_dims == (8,)
    assert adopted.model.top_mlp_dims == base.model.top_mlp_dims  # not recorded: the flag's
    # Another precision is a choice, not a contradiction.
    explicit = adopt_checkpoint_model(base, {**record, "bottom_mlp_dims": [8]}, {"use_amp"}, "C")
    assert not explicit.device.use_amp
    with pytest.raises(ConfigError, match=r"^--synthetic_dataset_cardinalities 1000,.* contra"):
        adopt_checkpoint_model(base, record, {"synthetic_dataset_cardinalities"}, "C")
    # A recorded model that this command line makes invalid is named as such.
    with pytest.raises(ConfigError, match="--bottom_mlp_dims must end with --embedding_dim"):
        adopt_checkpoint_model(base, record, frozenset(), "C")


def test_a_failed_save_keeps_training_and_the_last_one_is_reported(tmp_path, monkeypatch) -> None:
    import errno

    from models.training.checkpoint import CheckpointError
    from models.training.checkpoint import save as checkpoint_save

    real_write, failing = checkpoint_save._write_array, {4}

    def write(directory, relative, value):
        if int(directory.name.split("-")[1].split(".")[0]) in failing:
            raise OSError(errno.ENOSPC, "No space left on device", str(directory / relative))
        return real_write(directory, relative, value)

    monkeypatch.setattr(checkpoint_save, "_write_array", write)
    ckpt = tmp_path / "ckpt"
    args = ["dlrm_main.py", *TINY, "--skip_eval", "--max_steps=6", "--checkpoint_every_n_steps=2"]
    results = dlrm_main.main(
        [*args, f"--save_checkpoint_path={ckpt}", f"--log_path={tmp_path / 'l'}"]
    )
    assert results["steps"] == 6
    assert sorted(p.name for p in ckpt.iterdir()) == ["ckpt-000000002", "ckpt-000000006"]
    failed = [json.loads(line)["data"] for line in (tmp_path / "l").read_text().splitlines()]
    failed = [d["checkpoint_failed"] for d in failed if "checkpoint_failed" in d]
    assert len(failed) == 1 and failed[0].startswith("could not write the checkpoint of step 4 ")
    assert "No space left on device" in failed[0]
    failing.add(6)  # the last save has no next one: the run fails naming where
    with pytest.raises(CheckpointError, match=r"checkpoint of step 6 under --save_checkpoint_path"):
        dlrm_main.main(
            [*args, f"--save_checkpoint_path={tmp_path / 'c2'}", f"--log_path={tmp_path / 'l2'}"]
        )
