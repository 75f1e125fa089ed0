"""The loss `Trainer` reports is reduced over ranks weighted by each rank's rows."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.distributed.comm import LocalCommunicator
from models.distributed.hybrid import HybridParallel
from models.distributed.placement import plan_placement
from models.training.loop import LoopSettings
from models.training.trainer import Trainer
from tests.distributed import parity_setup as ps


class _Hooks:
    def __init__(self) -> None:
        self.progress_losses: list[float] = []

    def progress(self, step: int, metrics: dict[str, float]) -> None:
        self.progress_losses.append(metrics["loss"])

    def evaluate(self, step: int, alive):
        raise AssertionError("no evaluation was asked for")

    def save_checkpoint(self, step: int, epoch: int, batch: int) -> None:
        pass


class _PeerRank:
    """Rank 0 of 2: the peer's slice always has `peer_rows` rows of mean loss `peer_loss`."""

    def __init__(self, peer_loss: float, peer_rows: int) -> None:
        self.peer_loss, self.peer_rows = peer_loss, peer_rows
        self.calls: list[tuple[float, int]] = []

    def reduce(self, loss: tf.Tensor, rows: int) -> tf.Tensor:
        self.calls.append((float(loss), rows))
        return (loss * rows + self.peer_loss * self.peer_rows) / (rows + self.peer_rows)


def test_reported_loss_is_the_global_batch_mean_with_uneven_slices() -> None:
    # Rank 0's slices of 7-, 5- and 3-row global batches (4, 3 and 2 rows);
    # each row's loss is 1, so this rank's mean loss is 1 and the peer's is 4.
    rows = [4, 3, 2]
    batches = [({"x": tf.ones([r])}, tf.zeros([r, 1])) for r in rows]
    peer = _PeerRank(peer_loss=4.0, peer_rows=2)
    hooks = _Hooks()
    trainer = Trainer(
        lambda features, labels: tf.reduce_mean(features["x"]),
        LoopSettings(epochs=1, steps_per_epoch=3, print_freq=1, evals_per_epoch=0),
        hooks,
        learning_rate=lambda step: 0.0,
        reduce_loss=peer.reduce,
    )
    result = trainer.fit(lambda epoch, start: batches[start:])
    assert [r for _, r in peer.calls] == [4, 3, 2, 2]  # three progress lines, then the final loss
    # (1 * 4 + 4 * 2) / 6, (1 * 3 + 4 * 2) / 5, (1 * 2 + 4 * 2) / 4; unweighted: 2.5 each.
    np.testing.assert_allclose(hooks.progress_losses, [2.0, 2.2, 2.5], rtol=1e-6)
    assert result.final_loss == pytest.approx(2.5)


def test_one_process_reports_its_own_loss_unchanged() -> None:
    hp = HybridParallel(
        ps.build_model(), LocalCommunicator(), plan_placement([112, 176, 80, 208, 48], 1), 16
    )
    # In float32, 0.5540905 * 63 / 63 is not 0.5540905: one process must not
    # round its loss through the weighting.
    loss = tf.constant(0.5540905, tf.float32)
    assert (loss * 63.0 / 63.0).numpy() != loss.numpy()
    assert hp.mean_across_ranks(loss, weight=63).numpy() == loss.numpy()
    trainer = Trainer(
        lambda features, labels: tf.constant(0.3),
        LoopSettings(epochs=1, steps_per_epoch=2, print_freq=1, evals_per_epoch=0),
        _Hooks(),
        learning_rate=lambda step: 0.0,
    )
    batches = [({"x": tf.ones([3])}, tf.zeros([3, 1]))] * 2
    assert trainer.fit(lambda epoch, start: batches[start:]).final_loss == pytest.approx(0.3)
