"""tools.baseline: one-hot logistic regression on a binary dataset, and its AUC check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.data.writer import SplitArrays, write_dataset
from tools import baseline

CARDINALITIES = [4, 30, 6]


def _write(root, rows: int = 1200, seed: int = 0, crossed: bool = False) -> None:
    """Labels from a logistic model of table 1's id and numerical 0 (table 0: noise);
    ``crossed``: of the pair of ids of tables 0 and 2 only (neither has a main effect)."""
    rng = np.random.default_rng(seed)
    effects = rng.normal(0, 1.5, CARDINALITIES[1])
    signs = np.array([[1, -1, 1, -1, 1, -1], [-1, 1, -1, 1, -1, 1]] * 2)

    def arrays(n: int) -> SplitArrays:
        categorical = np.stack([rng.integers(0, c, n) for c in CARDINALITIES], 1)
        numerical = rng.normal(size=(n, 2))
        logit = effects[categorical[:, 1]] + numerical[:, 0]
        if crossed:
            logit = 2.0 * signs[categorical[:, 0], categorical[:, 2]]
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


def test_cross_indicators_mark_the_pairs_train_saw() -> None:
    categorical = np.array([[1, 9, 2], [3, 9, 5], [1, 0, 2], [2, 0, 0]])
    keys = baseline.cross_keys(categorical, (0, 2), (1, 1, 1), CARDINALITIES)
    assert keys.tolist() == [8, 23, 8, 12]
    # Table 1 multi-hot (hotness 2, -1 padding): table 2 is the fourth column.
    multi_hot = np.array([[1, 9, -1, 2], [3, 9, 4, 5]])
    assert baseline.cross_keys(multi_hot, (0, 2), (1, 2, 1), CARDINALITIES).tolist() == [8, 23]
    seen = np.unique(keys[:2])  # "train": the first two rows
    matrix = baseline.cross_indicators(keys, seen).toarray()
    assert matrix.tolist() == [[1, 0], [0, 1], [1, 0], [0, 0]]  # (2, 0) was never seen


def test_crosses_find_what_one_hot_ids_cannot(tmp_path, capsys) -> None:
    _write(tmp_path / "data", rows=2400, crossed=True)
    plain = baseline.run_baseline(tmp_path / "data", c_grid=(0.1, 1.0))
    crossed = baseline.run_baseline(tmp_path / "data", c_grid=(0.1, 1.0), crosses=[(0, 2)])
    assert plain.test_auc < 0.6 < 0.75 < crossed.test_auc
    assert crossed.features == plain.features + 4 * 6 and crossed.crosses == [[0, 2]]
    assert baseline.main([str(tmp_path / "data"), "--c_grid", "1", "--crosses", "0:2"]) == 0
    assert "+ id pairs of tables 0:2)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("crosses", "hotness", "message"),
    [
        ([(0, 3)], (1, 1, 1), "--crosses 0:3: table 3 is not one of the dataset's 3 tables"),
        ([(1, 1)], (1, 1, 1), "--crosses 1:1: a table is not crossed with itself"),
        ([(0, 1)], (1, 3, 1), "--crosses 0:1: table 1 is multi-hot (hotness 3)"),
    ],
)
def test_bad_crosses_are_named(crosses, hotness, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        baseline.check_crosses(crosses, hotness)


def test_crosses_flag_syntax_is_checked(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        baseline.main([str(tmp_path), "--crosses", "4-23"])
    assert "expected table pairs A:B separated by commas" in capsys.readouterr().err
