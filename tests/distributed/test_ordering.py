"""Collectives of one traced step run in program order (no Horovod needed).

A stand-in for the ``horovod.tensorflow`` module records every collective it is
asked for, as an identity op; the test traces a full hybrid train step as rank
0 of a 2-rank job (rank 1 owning no table, so rank 0 receives only its own
chunk and the stand-in needs no peer) and checks that each collective op has a control dependency
on the one issued before it, so TensorFlow cannot reorder them.
"""

from __future__ import annotations

import itertools
import types
import weakref

import tensorflow as tf

from models.distributed.comm import HorovodCommunicator
from models.distributed.hybrid import HybridParallel
from models.distributed.placement import Placement, Shard, embedding_table_bytes
from tests.distributed import parity_setup as ps


def _fake_horovod(calls: list[tuple[str, list]]) -> types.SimpleNamespace:
    """Collectives as identity ops; ``calls`` gets (name, output tensors) per call."""

    def record(name, tensors):
        outputs = [tf.identity(t) for t in tensors]
        calls.append((name, outputs))
        return outputs

    # Rank 0 of 2 where rank 1 owns no table: in the forward exchange rank 0
    # receives only its own chunk; in the reverse one rank 1 returns (zero)
    # gradients for the rows rank 0 sent it.
    sent_to_peer = {}

    def alltoall(x, splits, name):
        if name in sent_to_peer:
            out = tf.concat([x[: splits[0]], tf.zeros([sent_to_peer[name]], x.dtype)], 0)
        else:
            sent_to_peer[f"{name}_grad"] = splits[1]
            out = x[: splits[0]]
        return record(name, [out])[0], tf.stack([splits[0], 0])

    return types.SimpleNamespace(
        Sum="sum",
        Average="average",
        alltoall=alltoall,
        grouped_allreduce=lambda tensors, op, name: record(name, tensors),
        allgather=lambda x, name: record(name, [x])[0],
    )


def _communicator(calls: list[tuple[str, list]]) -> HorovodCommunicator:
    comm = HorovodCommunicator.__new__(HorovodCommunicator)  # skip hvd.init()
    comm._hvd = _fake_horovod(calls)
    comm.rank, comm.size, comm.local_rank = 0, 2, 0
    comm._last = weakref.WeakKeyDictionary()
    return comm


def test_collectives_of_a_traced_step_are_chained_in_program_order():
    calls: list[tuple[str, list]] = []
    comm = _communicator(calls)
    model = ps.build_model()
    sizes = embedding_table_bytes(ps.CARDINALITIES, ps.DIM)
    shards = tuple(Shard(t, 0, None, n, 0) for t, n in enumerate(sizes))
    placement = Placement(world_size=2, table_bytes=tuple(sizes), shards=shards)
    hp = HybridParallel(model, comm, placement, ps.GLOBAL_BATCH)
    step = ps.hybrid_train_step(hp)
    batch = ps.rank_view(ps.make_batches((ps.GLOBAL_BATCH,), seed=0)[0], hp)
    step.get_concrete_function(*batch)

    names = [name for name, _ in calls]
    # forward all-to-all, its reverse (backward), dense gradients, weighted loss mean.
    assert names == [
        "hybrid_embeddings",
        "hybrid_embeddings_grad",
        "dense_gradients_0",
        "weighted_mean_across_ranks_0",
    ]
    assert len(calls[2][1]) == len(model.dense_variables)
    # Every op of a collective waits for the first op of the collective before it.
    for (_, previous), (name, current) in itertools.pairwise(calls):
        for tensor in current:
            assert _depends_on(tensor.op, previous[0].op), name
    # The chain is made of control dependencies, not of the data flow alone:
    # the loss is computed before the backward pass, yet its mean waits for it.
    assert not _depends_on(calls[3][1][0].op, calls[1][1][0].op, control=False)


def _depends_on(op: tf.Operation, target: tf.Operation, control: bool = True) -> bool:
    """Whether ``op`` transitively waits for ``target`` (data, and control if asked)."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        if current is target:
            return True
        if current.name in seen:
            continue
        seen.add(current.name)
        stack += [t.op for t in current.inputs]
        if control:
            stack += current.control_inputs
    return False


def test_eager_collectives_need_no_chain():
    calls: list[tuple[str, list]] = []
    comm = _communicator(calls)
    out = comm.allgather(tf.ones([2, 1]), name="g")
    assert out.shape == (2, 1)
    assert [name for name, _ in calls] == ["g"]
    assert len(comm._last) == 0
