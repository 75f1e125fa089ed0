"""tools.baseline: one-hot logistic regression on a binary dataset, and its AUC check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.data.writer import SplitArrays, write_dataset
from tools import baseline

CARDINALITIES = [4, 30, 6]


def _write(root, rows: int = 1200, seed: int = 0) -> None:
    """Labels from a logistic model of table 1's id and numerical 0 (table 0: noise)."""
    rng = np.random.default_rng(seed)
    effects = rng.normal(0, 1.5, CARDINALITIES[1])

    def arrays(n: int) -> SplitArrays:
        categorical = np.stack([rng.integers(0, c, n) for c in CARDINALITIES], 1)
        numerical = rng.normal(size=(n, 2))
        logit = effects[categorical[:, 1]] + numerical[:, 0]
        labels = rng.random(n) < 1 / (1 + np.exp(-logit))
        return SplitArrays(labels, numerical, categorical)

    write_dataset(root, {"train": arrays(rows), "test": arrays(rows // 3)}, CARDINALITIES)


def test_one_hot_sets_one_column_per_valid_id() -> None:
    # Table 0 single-valued (3 rows), table 1 multi-hot of hotness 2 (4 rows), -1 padding.
    categorical = np.array([[2, 0, 3], [0, 1, -1], [1, -1, -1]])
    matrix = baseline.one_hot(categorical, hotness=(1, 2), cardinalities=(3, 4)).toarray()
    assert matrix.tolist() == [
        [0, 0, 1, 1, 0, 0, 1],
        [1, 0, 0, 0, 1, 0, 0],
        [0, 1, 0, 0, 0, 0, 0],
    ]


def test_baseline_learns_the_id_effects_and_both_aucs_agree(tmp_path) -> None:
    _write(tmp_path / "data")
    result = baseline.run_baseline(tmp_path / "data", c_grid=(0.01, 1.0), tune_fraction=0.25)
    assert result.train_rows == 1200 and result.test_rows == 400
    assert result.features == sum(CARDINALITIES) + 2
    assert result.test_auc == pytest.approx(result.test_auc_sklearn, abs=baseline.AUC_AGREEMENT)
    # The true logit's own AUC on such data is about 0.8; a model of noise gives 0.5.
    assert result.test_auc > 0.7
    assert result.best_c in (0.01, 1.0) and set(result.tuning_aucs) == {"0.01", "1"}
    assert result.tuning_aucs[f"{result.best_c:g}"] == max(result.tuning_aucs.values())


def test_command_line_prints_the_auc_check_and_writes_json(tmp_path, capsys) -> None:
    _write(tmp_path / "data", rows=600)
    out = tmp_path / "baseline.json"
    assert baseline.main([str(tmp_path / "data"), "--c_grid", "0.1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert f"test AUC {saved['test_auc']:.6f} on 200 rows" in printed
    assert "exact AUC check: sklearn roc_auc_score" in printed and saved["best_c"] == 0.1


def test_errors_are_one_line_naming_the_problem(tmp_path, capsys) -> None:
    assert baseline.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("tools.baseline: ")
    _write(tmp_path / "data", rows=300)
    assert baseline.main([str(tmp_path / "data"), "--tune_fraction", "1.5"]) == 2
    assert "--tune_fraction must be in (0, 1), got 1.5" in capsys.readouterr().err
