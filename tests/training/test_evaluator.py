"""Evaluation (exact AUC, log loss, rank-0 metrics) and the inference benchmark figures."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import log_loss, roc_auc_score

from models.training.evaluator import Evaluator
from models.training.inference import benchmark, replay_limit, summarize
from models.training.progress import Progress
from models.training.results_log import ResultsLogger, read_results_log


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


@pytest.mark.parametrize("rank", [0, 1])
def test_progress_lines_count_the_batches_on_rank_0(tmp_path, rank: int) -> None:
    logits, labels = _data(1000)
    path, stream = tmp_path / "log.json", io.StringIO()
    with ResultsLogger(path, rank=rank, stream=stream) as log:
        evaluator = Evaluator(_LogitParallel(), is_chief=rank == 0, max_batches=9)
        total = evaluator.batches_to_read(11)  # 10 full batches of 96 and one of 40
        progress = Progress(log, "eval", 12, total, every=4, samples_per_batch=96)
        evaluator.evaluate(_batches(logits, labels, 96), progress=progress)
    if rank:
        assert stream.getvalue() == "" and not path.exists()
        return
    lines = [e for e in read_results_log(path) if e.type == "LOG"]
    assert [(e.step, e.data["eval_batches_done"], e.data["eval_batches_total"]) for e in lines] == [
        (12, 4, 9),
        (12, 8, 9),
    ]
    assert stream.getvalue().count("eval_batches_done") == 2


def test_progress_counts_the_rows_of_a_short_last_batch(tmp_path) -> None:
    logits, labels = _data(1000)
    path = tmp_path / "log.json"
    now = [0.0]
    with ResultsLogger(path, stream=io.StringIO()) as log:
        # 11 batches: 10 of 96 rows, the last of 40; one line, at the end.
        progress = Progress(
            log, "eval", 0, 11, every=11, samples_per_batch=96, clock=lambda: now[0]
        )

        def tick() -> None:
            now[0] += 1.0

        Evaluator(_LogitParallel(), is_chief=True).evaluate(
            _batches(logits, labels, 96), on_batch=tick, progress=progress
        )
    (line,) = [e.data for e in read_results_log(path) if e.type == "LOG"]
    assert line["eval_samples_per_second"] == pytest.approx(1000 / 11)


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


class _Split:
    """A split of `_batches`, counting the calls of `as_dataset` and the batches read."""

    def __init__(self, logits: np.ndarray, labels: np.ndarray, batch: int) -> None:
        self._logits, self._labels, self._batch = logits, labels, batch
        self.calls = 0
        self.read = 0

    def __len__(self) -> int:
        return -(-len(self._labels) // self._batch)

    def as_dataset(self):
        self.calls += 1
        for element in _batches(self._logits, self._labels, self._batch):
            self.read += 1
            yield element


def _ticks(seconds: float):
    """A clock that moves `seconds` at each reading."""
    now = [0.0]

    def clock() -> float:
        now[0] += seconds
        return now[0]

    return clock


class _SumForward:
    """Forward pass that adds each batch's first numerical column to a device variable."""

    def __init__(self) -> None:
        self.total = tf.Variable(0.0)

    def __call__(self, features):
        self.total.assign_add(tf.reduce_sum(features["numerical"]))
        return features["numerical"][:, :1]


def test_a_small_split_is_read_once_and_replayed() -> None:
    logits, labels = _data(100)
    split = _Split(logits, labels, 30)  # 3 full batches and a short one
    forward = _SumForward()
    result = benchmark(forward, split, steps=10, warmup_steps=3, batch_size=30, clock=_ticks(0.002))
    assert split.calls == 1 and split.read == 4
    assert result.replayed_batches == 3 and result.as_dict()["replayed_batches"] == 3
    # Each clock reading is 2 ms after the previous one; a step is one reading long.
    assert result.steps == 7
    assert result.mean_latency_ms == pytest.approx(2.0)
    assert result.throughput == pytest.approx(30 / 0.002)
    # Steps 1..10 ran batches 0, 1, 2, 0, 1, 2, 0, 1, 2, 0 of the split.
    batch_sums = [float(logits[i * 30 : (i + 1) * 30].sum()) for i in range(3)]
    expected = sum(batch_sums[step % 3] for step in range(10))
    assert float(forward.total.numpy()) == pytest.approx(expected, rel=1e-5)
    assert result.as_dict()["latency_includes_input"] is False


def test_a_replay_keeps_at_most_its_limit() -> None:
    logits, labels = _data(100)
    split = _Split(logits, labels, 30)
    forward = _SumForward()
    result = benchmark(forward, split, steps=5, warmup_steps=0, batch_size=30, max_replay_batches=2)
    assert result.replayed_batches == 2 and split.read == 2  # reading stops at the limit
    sums = [float(logits[i * 30 : (i + 1) * 30].sum()) for i in range(2)]
    assert float(forward.total.numpy()) == pytest.approx(3 * sums[0] + 2 * sums[1], rel=1e-5)


def test_a_large_split_is_streamed_once() -> None:
    logits, labels = _data(100)
    split = _Split(logits, labels, 10)  # 10 full batches
    forward = _SumForward()
    result = benchmark(forward, split, steps=6, warmup_steps=1, batch_size=10)
    assert split.calls == 1 and split.read == 6 and result.replayed_batches == 0
    assert result.steps == 5
    assert float(forward.total.numpy()) == pytest.approx(float(logits[:60].sum()), rel=1e-5)


def test_inference_progress_counts_steps_on_rank_0(tmp_path) -> None:
    logits, labels = _data(100)
    path = tmp_path / "log.json"
    with ResultsLogger(path, stream=io.StringIO()) as log:
        progress = Progress(log, "inference", 7, total=10, every=4, samples_per_batch=30)
        benchmark(
            _SumForward(), _Split(logits, labels, 30), 10, 2, batch_size=30, progress=progress
        )
    done = [e.data["inference_batches_done"] for e in read_results_log(path) if e.type == "LOG"]
    assert done == [4, 8]


def test_benchmark_refuses_bad_steps_and_splits_without_a_full_batch() -> None:
    logits, labels = _data(100)
    split = _Split(logits, labels, 30)
    with pytest.raises(ValueError, match="warmup_steps"):
        benchmark(lambda f: f["numerical"], split, steps=3, warmup_steps=3, batch_size=30)
    with pytest.raises(ValueError, match="no full batch of 200 rows"):
        benchmark(lambda f: f["numerical"], split, steps=3, warmup_steps=0, batch_size=200)
    with pytest.raises(ValueError, match="max_replay_batches"):
        benchmark(lambda f: f["numerical"], split, 3, 0, batch_size=30, max_replay_batches=0)


def test_replay_limit_fits_the_budget() -> None:
    assert replay_limit(10, budget_bytes=95) == 9
    assert replay_limit(1000, budget_bytes=10) == 1  # at least one batch
    with pytest.raises(ValueError, match="global_batch_bytes"):
        replay_limit(0)
