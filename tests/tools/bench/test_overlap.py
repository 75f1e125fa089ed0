"""The benchmark-only ``top_first`` step trains exactly like ``TrainStep`` (one process)."""

import numpy as np

from models.distributed.comm import LocalCommunicator
from models.training.optimizers import make_optimizers
from models.training.train_step import TrainStep
from tests.distributed import parity_setup as ps
from tools.bench import overlap as bench_overlap


class _RecordingComm(LocalCommunicator):
    """One process that records the names of the allreduces it is asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def grouped_allreduce(self, tensors, average, name):
        self.calls.append(name)
        return super().grouped_allreduce(tensors, average, name)


def _train(variant: str, monkeypatch) -> tuple[list[float], list[np.ndarray], list[str]]:
    if variant == "top_first":
        monkeypatch.setattr(TrainStep, "_step", bench_overlap.top_first_step)
    comm = _RecordingComm()
    hp = ps.make_hybrid(comm, ps.build_model())
    dense_optimizer, embedding_optimizer = make_optimizers("adagrad", ps.LEARNING_RATE)
    step = TrainStep(
        hp,
        hp.model.dense_variables,
        hp.owned_embedding_variables,
        dense_optimizer,
        embedding_optimizer,
    )
    losses = []
    for numerical, categorical, labels in ps.make_batches(ps.TRAIN_BATCHES, seed=1):
        features = {"numerical": numerical, "categorical": categorical}
        losses.append(float(step(features, labels)))
    variables = [*hp.model.dense_variables, *hp.owned_embedding_variables]
    return losses, [v.numpy() for v in variables], comm.calls


def test_top_first_step_trains_like_the_train_step(monkeypatch):
    with monkeypatch.context() as patch:
        expected_losses, expected, _ = _train("grouped", patch)
    losses, weights, calls = _train("top_first", monkeypatch)
    # The top MLP's allreduce is issued by the step itself (one process runs
    # no other allreduce), once per trace.
    assert calls and set(calls) == {"dense_gradients_top"}
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-6)
    initial = ps.build_model().dense_variables[0].numpy()
    assert not np.allclose(initial, expected[0])
    for got, want in zip(weights, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
