"""Evaluation (exact AUC, log loss, rank-0 metrics) and the inference benchmark figures."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import log_loss, roc_auc_score

from models.training.evaluator import Evaluator
from models.training.inference import benchmark, summarize


class _LogitParallel:
    """Forward returns the first numerical feature as the logit; gather is the identity."""

    def forward(self, numerical, categorical):
        del categorical
        return numerical[:, :1]

    def gather_predictions(self, predictions, labels):
        return tf.reshape(predictions, [-1, 1]), tf.reshape(labels, [-1, 1])

    rank0_auc = None  # what the collective returns on another rank; None: one process

    def share_from_rank0(self, value):
        self.offered = value
        return value if self.rank0_auc is None else self.rank0_auc


def _batches(logits: np.ndarray, labels: np.ndarray, batch: int):
    for start in range(0, len(labels), batch):
        rows = slice(start, start + batch)
        features = {
            "numerical": tf.constant(logits[rows, None].astype(np.float32)),
            "categorical": tf.zeros([len(labels[rows]), 1], tf.int32),
        }
        yield features, tf.constant(labels[rows, None].astype(np.float32))


def _data(n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.float32)
    # Informative but noisy logits, rounded so that some scores tie.
    logits = np.round(labels * 1.0 + rng.normal(size=n), 1).astype(np.float32)
    return logits, labels


def test_auc_and_log_loss_match_sklearn_over_all_batches() -> None:
    logits, labels = _data()
    result = Evaluator(_LogitParallel(), is_chief=True).evaluate(_batches(logits, labels, 96))
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    assert result.samples == 1000  # the short last batch (40 rows) included
    assert result.auc == pytest.approx(roc_auc_score(labels, p), abs=1e-6)
    assert result.log_loss == pytest.approx(log_loss(labels, p), rel=1e-5)
    assert 0.6 < result.auc < 0.9


def test_max_batches_limits_the_evaluation() -> None:
    logits, labels = _data()
    evaluator = Evaluator(_LogitParallel(), is_chief=True, max_batches=2)
    result = evaluator.evaluate(_batches(logits, labels, 100))
    p = 1 / (1 + np.exp(-logits[:200].astype(np.float64)))
    assert result.samples == 200
    assert result.auc == pytest.approx(roc_auc_score(labels[:200], p), abs=1e-6)


def test_only_rank_0_computes_metrics_and_shares_its_auc() -> None:
    logits, labels = _data(200)
    parallel = _LogitParallel()
    chief = Evaluator(parallel, is_chief=True).evaluate(_batches(logits, labels, 64))
    assert parallel.offered == chief.auc is not None  # rank 0 offers its AUC
    parallel.rank0_auc = chief.auc
    result = Evaluator(parallel, is_chief=False).evaluate(_batches(logits, labels, 64))
    # Another rank offers nothing and gets rank 0's AUC; no other metric.
    assert parallel.offered is None
    assert result.auc == chief.auc and result.log_loss is None and result.samples == 0


@pytest.mark.parametrize("is_chief", [True, False])
def test_on_batch_is_called_after_each_batch_on_every_rank(is_chief: bool) -> None:
    logits, labels = _data(200)
    calls = []
    Evaluator(_LogitParallel(), is_chief=is_chief, max_batches=3).evaluate(
        _batches(logits, labels, 64), on_batch=lambda: calls.append(1)
    )
    assert len(calls) == 3  # 4 batches, limited to 3


def test_saturated_scores_keep_their_order() -> None:
    """Logits 20 and 30 both have a float32 sigmoid of 1.0; the AUC must still see 20 < 30."""
    logits = np.array([20.0, 30.0, 20.0, 30.0], np.float32)
    labels = np.array([0.0, 1.0, 0.0, 1.0], np.float32)
    result = Evaluator(_LogitParallel(), is_chief=True).evaluate(_batches(logits, labels, 4))
    assert result.auc == 1.0
    assert result.log_loss == pytest.approx(np.mean([20.0, np.exp(-30.0), 20.0, 0.0]), rel=1e-6)


def test_one_class_labels_give_no_auc_but_the_log_loss() -> None:
    logits = np.array([0.5, -1.0, 2.0], np.float32)
    result = Evaluator(_LogitParallel(), is_chief=True).evaluate(
        _batches(logits, np.zeros(3, np.float32), 2)
    )
    assert result.auc is None and result.samples == 3
    assert result.log_loss == pytest.approx(
        log_loss([0, 0, 0], 1 / (1 + np.exp(-logits)), labels=[0, 1]), rel=1e-5
    )


def test_empty_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="no batches"):
        Evaluator(_LogitParallel(), is_chief=True).evaluate([])


def test_summarize_percentiles_and_throughput() -> None:
    seconds = np.arange(1, 101, dtype=np.float64) / 1000  # 1 ms .. 100 ms
    result = summarize(seconds, batch_size=50)
    assert result.steps == 100
    assert result.mean_latency_ms == pytest.approx(50.5)
    assert result.latency_ms[50] == pytest.approx(50.5)
    assert result.latency_ms[99] == pytest.approx(99.01)
    assert result.throughput == pytest.approx(50 * 100 / seconds.sum())
    assert set(result.as_dict()) >= {"p50_latency_ms", "p90_latency_ms", "p95_latency_ms"}


def test_benchmark_cycles_the_split_and_excludes_warmup() -> None:
    logits, labels = _data(100)
    calls = []

    def batches():
        calls.append(1)
        return _batches(logits, labels, 30)  # 3 full batches and a short one per pass

    parallel = _LogitParallel()
    result = benchmark(
        lambda f: parallel.forward(f["numerical"], f["categorical"]),
        batches,
        steps=10,
        warmup_steps=3,
        batch_size=30,
    )
    assert result.steps == 7 and len(calls) == 4
    with pytest.raises(ValueError, match="warmup_steps"):
        benchmark(lambda f: f["numerical"], batches, steps=3, warmup_steps=3, batch_size=30)
    with pytest.raises(ValueError, match="no full batch of 200 rows"):
        benchmark(lambda f: f["numerical"], batches, steps=3, warmup_steps=0, batch_size=200)
