"""--linear end to end through `main([...])`: trained, recorded in the checkpoint, adopted by
eval, contradicted by a flag, exported with the weights' column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dlrm_main
from models.config import ConfigError
from models.data.writer import SplitArrays, write_dataset

CARDINALITIES = [40, 7, 3]
MODEL = [
    "--batch_size=128",
    "--valid_batch_size=128",
    "--embedding_dim=4",
    "--bottom_mlp_dims=8,4",
    "--top_mlp_dims=8,1",
    "--optimizer=adam",
    "--learning_rate=0.05",
    "--warmup_steps=0",
    "--decay_start_step=0",
    "--decay_steps=0",
    "--print_freq=100",
    "--seed=5",
]


def _write_dataset(root: Path) -> None:
    """Clicks driven by a per-id effect of table 0 alone: what a linear part fits."""
    rng = np.random.default_rng(0)
    effect = rng.normal(0.0, 1.5, CARDINALITIES[0])

    def arrays(rows: int) -> SplitArrays:
        categorical = np.stack([rng.integers(0, n, rows) for n in CARDINALITIES], 1)
        clicks = rng.random(rows) < 1.0 / (1.0 + np.exp(-effect[categorical[:, 0]]))
        return SplitArrays(clicks, rng.random((rows, 2)), categorical)

    write_dataset(root, {"train": arrays(2048), "test": arrays(512)}, CARDINALITIES)


def _main(root: Path, name: str, *args: str) -> dict:
    return dlrm_main.main(
        [
            "dlrm_main.py",
            *MODEL,
            f"--dataset_path={root / 'data'}",
            f"--log_path={root / f'{name}.json'}",
            *args,
        ]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("linear")
    _write_dataset(root / "data")
    results = _main(
        root, "train", "--linear", "--epochs=3", f"--save_checkpoint_path={root / 'ckpt'}"
    )
    return {"root": root, "results": results}


def test_the_checkpoint_records_the_linear_part_and_its_column(trained) -> None:
    root, results = trained["root"], trained["results"]
    assert results["auc"] > 0.7  # the per-id effects were learnt
    checkpoint = root / "ckpt" / f"ckpt-{results['steps']:09d}"
    saved = json.loads((checkpoint / "checkpoint.json").read_text())
    assert saved["model_config"]["linear"] is True
    assert np.load(checkpoint / "tables" / "table_0.npy").shape == (CARDINALITIES[0], 4 + 1)


def test_eval_adopts_the_linear_part_and_a_contradicting_flag_is_refused(trained) -> None:
    root, results = trained["root"], trained["results"]
    evaluated = _main(root, "eval", "--mode=eval", f"--restore_checkpoint_path={root / 'ckpt'}")
    assert evaluated["auc"] == pytest.approx(results["auc"], abs=1e-6)
    with pytest.raises(ConfigError, match=r"--linear False contradicts the checkpoint"):
        _main(
            root,
            "refused",
            "--mode=eval",
            "--nolinear",
            f"--restore_checkpoint_path={root / 'ckpt'}",
        )


def test_the_export_serves_what_eval_scored(trained) -> None:
    import tensorflow as tf

    from tools.baseline import read_split
    from tools.export import export_checkpoint

    root = trained["root"]
    scores = root / "export_eval_scores.npy"
    _main(
        root,
        "export_eval",
        "--mode=eval",
        f"--restore_checkpoint_path={root / 'ckpt'}",
        f"--eval_scores_path={scores}",
    )
    export_checkpoint(root / "ckpt", root / "exported")
    loaded = tf.saved_model.load(str(root / "exported"))
    split = read_split(root / "data", "test")
    served = loaded.serve(
        tf.constant(split.numerical, tf.float32), tf.constant(split.categorical, tf.int32)
    )["probability"].numpy()[:, 0]
    np.testing.assert_allclose(served, np.load(scores).reshape(-1), rtol=1e-5, atol=1e-6)
