"""Exact AUC and log loss against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from models.training.auc import log_loss, log_loss_from_logits, roc_auc


def test_hand_computed_with_a_tie():
    # positives 0.8, 0.4; negatives 0.4, 0.1 -> pairs: (0.8>0.4), (0.8>0.1), (0.4=0.4), (0.4>0.1)
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.8, 0.4, 0.4, 0.1], np.float32)
    assert roc_auc(labels, scores) == pytest.approx(3.5 / 4, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_equals_sklearn_on_random_data_with_ties(seed, dtype):
    rng = np.random.default_rng(seed)
    n = 20_000
    labels = rng.random(n) < 0.3
    logits = rng.normal(size=n) + labels
    # rounding creates many ties, across positives and negatives
    scores = np.round(logits, 1 + seed % 2).astype(dtype)
    got = roc_auc(labels, scores)
    assert got == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    # and without rounding (few or no ties)
    exact = logits.astype(dtype)
    assert roc_auc(labels.astype(np.float32)[:, None], exact[:, None]) == pytest.approx(
        roc_auc_score(labels, exact), abs=1e-6
    )


def test_float64_scores_that_float32_would_merge_take_the_exact_path():
    labels = np.array([0, 1, 0, 1])
    scores = np.array([1.0, 1.0 + 1e-12, 2.0, 2.0 - 1e-12])  # all distinct in float64
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(labels, scores) == 0.5


def test_signed_zeros_infinities_and_all_tied():
    labels = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([-0.0, 0.0, np.inf, -np.inf, -1.5, 3.0], np.float32)
    # (-0 vs 0: tie, vs -inf, vs 3) = 1.5; inf beats all = 3; -1.5 beats -inf = 1
    assert roc_auc(labels, scores) == pytest.approx(5.5 / 9, abs=1e-12)
    assert roc_auc(labels, np.ones(6, np.float32)) == 0.5


def test_large_input_with_saturated_probabilities_matches_sklearn():
    rng = np.random.default_rng(9)
    n = 300_000
    labels = rng.random(n) < 0.25
    probabilities = 1 / (1 + np.exp(-(8 * rng.normal(size=n) + 3 * labels)))
    scores = probabilities.astype(np.float32)  # saturates to exactly 0 and 1: large tie groups
    assert (scores == 1).sum() > 100
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 0], [0.5], "2 labels but 1 scores"),
        ([], [], "no samples"),
        ([1, 2, 0], [0.1, 0.2, 0.3], r"labels must be 0 or 1; found \[2\] \(first at index 1\)"),
        ([1, 0, 1], [0.1, np.nan, 0.3], r"1 NaN scores \(first at index 1\)"),
        ([1, 1], [0.1, 0.2], "undefined with one class: 2 positives, 0 negatives"),
    ],
)
def test_invalid_inputs_are_explained(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        roc_auc(np.array(labels), np.array(scores, np.float32))


def test_log_losses_equal_sklearn():
    rng = np.random.default_rng(2)
    labels = rng.random(5000) < 0.4
    logits = 3 * rng.normal(size=5000)
    probabilities = 1 / (1 + np.exp(-logits))
    want = sk_log_loss(labels, probabilities)
    assert log_loss(labels, probabilities) == pytest.approx(want, rel=1e-9)
    assert log_loss_from_logits(labels, logits) == pytest.approx(want, rel=1e-9)


def test_log_loss_from_logits_is_stable_for_huge_logits():
    value = log_loss_from_logits(np.array([1, 0]), np.array([-1000.0, 1000.0]))
    assert value == pytest.approx(1000.0)
    assert np.isfinite(log_loss(np.array([1, 0]), np.array([0.0, 1.0])))
