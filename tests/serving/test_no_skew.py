"""No training/serving skew: for every row of a test split, three scores agree.

- the ``serve_raw`` signature's score of the raw row (the log's fields as strings);
- the id-input signature's score of the row as preproc wrote it;
- ``dlrm_main --mode eval``'s score of that row (``--eval_scores_path``).

The SavedModel is loaded as a server loads it: in a fresh interpreter, outside the
repository, with only TensorFlow and the files (the script checks that this
repository's packages cannot be imported). Also for the SavedModel that
``python -m tools.export CKPT OUT --dataset DIR`` writes from the checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlrm_main
from tests.serving import cases
from tools import export as export_tool

TRAIN = [
    "--dataset_type=raw",
    "--batch_size=128",
    "--valid_batch_size=128",
    "--embedding_dim=8",
    "--bottom_mlp_dims=16,8",
    "--top_mlp_dims=16,1",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--warmup_steps=0",
    "--print_freq=100",
    "--seed=5",
]
SERVE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import numpy as np, tensorflow as tf
    model, raw_path, ids_path, out_path = sys.argv[1:]
    assert importlib.util.find_spec("models") is None, "the repository is importable"
    loaded = tf.saved_model.load(model)
    with open(raw_path, encoding="utf-8") as f:
        raw_fields = json.load(f)
    columns = {k: tf.constant([v.encode("latin-1") for v in vs]) for k, vs in raw_fields.items()}
    raw = loaded.signatures["serve_raw"](**columns)
    ids = np.load(ids_path)
    by_ids = loaded.signatures["serving_default"](
        numerical=tf.constant(ids["numerical"]), categorical=tf.constant(ids["categorical"]))
    pre = loaded.signatures["preprocess_raw"](**columns)
    np.savez(out_path, raw=raw["probability"].numpy(), ids=by_ids["probability"].numpy(),
             rejected=(raw["reject_reason"].numpy() != b""), numerical=pre["numerical"].numpy(),
             categorical=pre["categorical"].numpy())
    """
)


def _served(model: Path, case: cases.Case, work: Path) -> dict[str, np.ndarray]:
    """Both signatures' scores of the test split, from a fresh interpreter outside the repo."""
    info = json.loads((model / "dlrm_signature.json").read_text())
    inputs = [c["input"] for c in info["raw_inputs"]["columns"]]
    rows = case.test_rows()
    raw = {key: [r[i].decode("latin-1") for r in rows] for i, key in enumerate(inputs)}
    (work / "raw.json").write_text(json.dumps(raw), encoding="utf-8")
    numerical, categorical = case.test_split()
    np.savez(work / "ids.npz", numerical=numerical, categorical=categorical)
    (work / "serve.py").write_text(SERVE)
    subprocess.run(
        [sys.executable, "serve.py", str(model), "raw.json", "ids.npz", "out.npz"],
        cwd=work,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=True,
        timeout=300,
    )
    return dict(np.load(work / "out.npz"))


def _check_no_skew(case: cases.Case, tmp_path: Path) -> None:
    model, ckpt = tmp_path / "saved_model", tmp_path / "ckpt"
    data = [*TRAIN, f"--dataset_path={case.root}"]
    trained = dlrm_main.main(
        [
            "dlrm_main.py",
            *data,
            f"--log_path={tmp_path / 'train.json'}",
            f"--save_checkpoint_path={ckpt}",
            f"--export_saved_model_path={model}",
        ]
    )
    assert trained["auc"] is not None
    scores = tmp_path / "eval_scores.npy"
    dlrm_main.main(
        [
            "dlrm_main.py",
            *data,
            "--mode=eval",
            f"--restore_checkpoint_path={ckpt}",
            f"--eval_scores_path={scores}",
            f"--log_path={tmp_path / 'eval.json'}",
        ]
    )
    evaluated = np.load(scores)
    rows = len(case.test_rows())
    assert evaluated.shape == (rows,) and evaluated.dtype == np.float32
    exported = tmp_path / "exported"
    assert export_tool.main([str(ckpt), str(exported), "--dataset", str(case.root)]) == 0
    for served_model in (model, exported):
        work = tmp_path / f"serve_{served_model.name}"
        work.mkdir()
        served = _served(served_model, case, work)
        assert not served["rejected"].any()
        # Inside the served graph, the raw rows become the very rows preproc wrote.
        np.testing.assert_array_equal(served["numerical"], case.test_split()[0])
        np.testing.assert_array_equal(served["categorical"], case.test_split()[1])
        raw, ids = served["raw"][:, 0], served["ids"][:, 0]
        # The raw path feeds the model the very inputs of the id path: the same graph.
        np.testing.assert_array_equal(raw, ids)
        np.testing.assert_allclose(raw, evaluated, rtol=2e-6, atol=1e-7)
        assert np.unique(raw).size > rows // 2  # scores that differ from row to row


@pytest.mark.slow
def test_criteo_raw_rows_score_as_preprocessed_rows_and_eval(tmp_path):
    _check_no_skew(cases.criteo_case(tmp_path / "data"), tmp_path)


@pytest.mark.slow
def test_schema_raw_rows_score_as_preprocessed_rows_and_eval(tmp_path):
    # Strings (non-ASCII, quoted commas), missing values, unseen and rare values, a
    # hashed column, a multi-hot column (empty elements, truncated lists, padding).
    _check_no_skew(cases.schema_case(tmp_path / "data"), tmp_path)
