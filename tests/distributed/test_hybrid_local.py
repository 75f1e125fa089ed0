"""HybridParallel with one process (LocalCommunicator): no Horovod needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.data.slicing import batch_slice
from models.distributed.comm import Communicator, LocalCommunicator
from models.distributed.hybrid import HybridParallel, slice_sizes
from models.distributed.placement import plan_placement
from models.distributed.routing import SplitLayout
from models.distributed.row_split import RowSplitLookup
from tests.distributed import parity_setup as ps

REPO = Path(__file__).resolve().parents[2]


class _FakeComm(LocalCommunicator):
    """A communicator that only claims a rank and size (no collective is called)."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size, self.local_rank = rank, size, rank


def test_slice_sizes_match_batch_slice():
    for world in range(1, 6):
        for rows in range(0, 23):
            expected = [batch_slice(rows, r, world)[1] for r in range(world)]
            assert slice_sizes(tf.constant(rows), world).numpy().tolist() == expected


def test_world_one_matches_plain_model_exactly():
    hybrid = ps.run_hybrid(LocalCommunicator())
    reference = ps.run_reference()
    assert sorted(hybrid) == sorted(reference)
    # Training moved the weights, so the comparison below is not trivial.
    assert not np.allclose(ps.build_model().dense_variables[0].numpy(), reference["dense_0"])
    for key, expected in reference.items():
        np.testing.assert_allclose(hybrid[key], expected, rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("optimizer", [None, "adam"])
def test_world_one_matches_plain_model_with_multi_hot_tables(optimizer):
    hybrid = ps.run_hybrid(LocalCommunicator(), optimizer=optimizer, hotness=ps.MULTI_HOT)
    reference = ps.run_reference(optimizer, hotness=ps.MULTI_HOT)
    # The multi-hot data really hold padding and repeated ids.
    (_, categorical, _), *_ = ps.make_batches(ps.TRAIN_BATCHES, seed=1, hotness=ps.MULTI_HOT)
    assert categorical.shape[1] == sum(ps.MULTI_HOT) and (categorical == -1).any()
    for key, expected in reference.items():
        np.testing.assert_allclose(hybrid[key], expected, rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("hotness", [None, ps.MULTI_HOT], ids=["one_hot", "multi_hot"])
def test_world_one_matches_plain_model_with_a_linear_part(hotness):
    hybrid = ps.run_hybrid(LocalCommunicator(), optimizer="adam", hotness=hotness, linear=True)
    reference = ps.run_reference("adam", hotness=hotness, linear=True)
    assert reference["table_0"].shape[1] == ps.DIM + 1
    for key, expected in reference.items():
        np.testing.assert_allclose(hybrid[key], expected, rtol=1e-6, atol=1e-7, err_msg=key)


def test_split_lookup_pools_multi_hot_bags_like_the_model():
    """RowSplitLookup on one process (the all-to-alls are the identity) against
    the model's own pooled lookup: values, and the gradient's rows."""
    model = ps.build_model(hotness=ps.MULTI_HOT)
    tables = (0, 1, 3)  # one-hot, mean of 3, sum of 2
    base = np.cumsum([0, *(ps.CARDINALITIES[t] for t in tables)])
    layout = SplitLayout(
        tables,
        tuple(int(b) for b in base[:-1]),
        tuple(int(b) for b in base[:-1]),
        (0, 0, 0),
        tuple((t, 0, ps.CARDINALITIES[t], int(b)) for t, b in zip(tables, base, strict=False)),
    )
    lookup = RowSplitLookup(model, LocalCommunicator(), layout, tf.float32)
    ids = tf.constant(
        [[6, 4, 5, 5, 12, -1], [0, -1, -1, -1, -1, -1], [4, 10, -1, 0, 6, 6]], tf.int32
    )
    variables = [model.embedding_variables[t] for t in tables]
    with tf.GradientTape(persistent=True) as tape:
        split = lookup(ids)
        whole = model.lookup(ids, tables)
        weights = tf.constant(np.arange(1, 13, dtype=np.float32).reshape(3, 4))
        split_loss = sum(tf.reduce_sum(v * weights * (k + 1)) for k, v in enumerate(split))
        whole_loss = sum(tf.reduce_sum(v * weights * (k + 1)) for k, v in enumerate(whole))
    table = {t: model.embedding_variables[t].numpy() for t in tables}
    mean_0, mean_2 = (table[1][4] + 2 * table[1][5]) / 3, (table[1][10] + table[1][0]) / 2
    expected_1 = [mean_0, np.zeros(ps.DIM), mean_2]
    expected_3 = [table[3][12], np.zeros(ps.DIM), 2 * table[3][6]]
    np.testing.assert_allclose(split[0].numpy(), table[0][[6, 0, 4]], rtol=1e-6)
    np.testing.assert_allclose(split[1].numpy(), expected_1, rtol=1e-6)
    np.testing.assert_allclose(split[2].numpy(), expected_3, rtol=1e-6)
    split_grads = tape.gradient(split_loss, variables)
    whole_grads = tape.gradient(whole_loss, variables)
    for got, want in zip(split_grads, whole_grads, strict=True):
        # Only the valid ids' rows get a gradient: padding names no row.
        assert isinstance(got, tf.IndexedSlices)
        assert sorted(got.indices.numpy().tolist()) == sorted(want.indices.numpy().tolist())
        np.testing.assert_allclose(
            tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(want).numpy(), rtol=1e-6
        )
    # The split lookup bounds its bytes by full bags: 16 rows x (1 + 3 + 2) ids.
    assert lookup.alltoall_bytes_per_step(16) == 0  # one rank sends nothing
    two = RowSplitLookup(model, _FakeComm(0, 2), layout, tf.float32)
    assert two.alltoall_bytes_per_step(16) == 16 * 6 * (8 + 2 * ps.DIM * 4)


def test_owned_tables_and_byte_counts_for_two_ranks():
    dlrm = ps.build_model()
    placement = plan_placement([112, 176, 80, 208, 48], world_size=2)
    rank0 = HybridParallel(dlrm, _FakeComm(0, 2), placement, global_batch_size=16)
    rank1 = HybridParallel(dlrm, _FakeComm(1, 2), placement, global_batch_size=16)
    # Greedy: 208 (t3) -> r0, 176 (t1) -> r1, 112 (t0) -> r1, 80 (t2) -> r0, 48 (t4) -> r0 (tie).
    assert rank0.owned_tables == (2, 3, 4)
    assert rank1.owned_tables == (0, 1)
    assert rank0.all_tables_bytes == 624
    assert (rank0.local_tables_bytes, rank1.local_tables_bytes) == (336, 288)
    # Each rank sends 8 rows x its tables x 4 floats x 4 bytes to the other one,
    # forward and backward: 2 * (8 * 3 * 16 + 8 * 2 * 16).
    assert rank0.alltoall_bytes_per_step() == 1280
    assert "all-to-all: 1280 bytes per step" in rank0.describe()
    assert "rank 1: 2 tables" in rank0.describe()


def test_world_one_sends_nothing():
    assert isinstance(LocalCommunicator(), Communicator)
    model = ps.build_model()
    hp = ps.make_hybrid(LocalCommunicator(), model)
    assert hp.owned_tables == (0, 1, 2, 3, 4)
    assert hp.alltoall_bytes_per_step() == 0


def test_rejects_mismatched_placement_and_inputs():
    model = ps.build_model()
    sizes = [112, 176, 80, 208, 48]
    with pytest.raises(ValueError, match="placement is for 2 ranks but the job has 1"):
        HybridParallel(model, LocalCommunicator(), plan_placement(sizes, 2), 16)
    with pytest.raises(ValueError, match="covers 4 tables, the model has 5"):
        HybridParallel(model, LocalCommunicator(), plan_placement(sizes[:4], 1), 16)
    split = plan_placement(sizes, 4, budget_bytes=200, table_rows=[7, 11, 5, 13, 3])
    assert split.row_ranges(2) == {3: (0, 7)}
    with pytest.raises(
        ValueError, match=r"rank 2: the placement gives it rows \[\(3, \(0, 7\)\)\]"
    ):
        HybridParallel(model, _FakeComm(2, 4), split, 16)
    with pytest.raises(ValueError, match="smaller than the world size"):
        HybridParallel(model, _FakeComm(0, 2), plan_placement(sizes, 2), 1)
    hp = HybridParallel(model, LocalCommunicator(), plan_placement(sizes, 1), 16)
    numerical, categorical, _ = ps.make_batches((4,), seed=0)[0]
    with pytest.raises(ValueError, match=r"categorical must be \[B, 5\]"):
        hp.forward(tf.constant(numerical), tf.constant(categorical[:, :3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="this rank's slice"):
        hp.forward(tf.constant(numerical[:3]), tf.constant(categorical))


def test_world_one_never_imports_horovod():
    code = (
        "import sys\n"
        "from models.distributed.comm import make_communicator\n"
        "from tests.distributed import parity_setup as ps\n"
        "comm = make_communicator(use_horovod=False)\n"
        "hp = ps.make_hybrid(comm, ps.build_model())\n"
        "batch = ps.make_batches((4,), seed=0)[0]\n"
        "hp.forward(*ps.rank_view(batch, hp)[:2])\n"
        "assert not any(m.startswith('horovod') for m in sys.modules), 'horovod imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


class _PeerSum(_FakeComm):
    """Rank 0 of 2 whose peer contributes fixed tensors to every sum."""

    def __init__(self, peer: list[float]) -> None:
        super().__init__(0, 2)
        self.peer = peer

    def grouped_allreduce(self, tensors, average, name):
        sums = [t + p for t, p in zip(tensors, self.peer, strict=True)]
        return [s / 2 for s in sums] if average else sums


@pytest.mark.parametrize(
    ("mine", "peer", "expected"),
    [
        ((0.2, 2), (0.8 * 6, 6.0), 0.65),  # (0.2 * 2 + 0.8 * 6) / 8
        ((0.5, 3), (0.0, 0.0), 0.5),  # the peer had no rows (its mean is NaN, weight 0)
        ((np.nan, 0), (0.5 * 3, 3.0), 0.5),  # this rank had no rows
    ],
)
def test_weighted_mean_across_ranks(mine, peer, expected):
    sizes = [112, 176, 80, 208, 48]
    hp = HybridParallel(ps.build_model(), _PeerSum(list(peer)), plan_placement(sizes, 2), 16)
    value, weight = mine
    result = hp.mean_across_ranks(tf.constant(value, tf.float32), weight=tf.constant(weight))
    assert float(result) == pytest.approx(expected)
    hp.comm.peer = [3.0]
    assert float(hp.mean_across_ranks(tf.constant(1.0))) == 2.0


def test_reduce_gradients_scales_embeddings_and_averages_dense():
    sizes = [112, 176, 80, 208, 48]
    comm = _PeerSum([tf.constant([3.0, 5.0])])
    hp = HybridParallel(ps.build_model(), comm, plan_placement(sizes, 2), 16)
    sparse = tf.IndexedSlices(tf.constant([[2.0, 4.0]]), tf.constant([1]), tf.constant([3, 2]))
    embedding, dense = hp.reduce_gradients(
        [sparse, tf.constant([6.0]), None], [None, tf.constant([1.0, 1.0])]
    )
    assert isinstance(embedding[0], tf.IndexedSlices)
    np.testing.assert_array_equal(embedding[0].values.numpy(), [[1.0, 2.0]])
    np.testing.assert_array_equal(embedding[0].indices.numpy(), [1])
    np.testing.assert_array_equal(embedding[1].numpy(), [3.0])
    assert embedding[2] is None and dense[0] is None
    np.testing.assert_array_equal(dense[1].numpy(), [2.0, 3.0])


@pytest.fixture
def bfloat16_policy():
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def test_vectors_travel_in_the_16_bit_compute_dtype(bfloat16_policy):
    model = ps.build_model()
    sizes = [112, 176, 80, 208, 48]
    hp = HybridParallel(model, _FakeComm(0, 2), plan_placement(sizes, 2), 16)
    assert hp.transport_dtype == tf.bfloat16
    assert hp.alltoall_bytes_per_step() == 1280 // 2  # half of the float32 figure above
    assert "bfloat16 vectors" in hp.describe()
    # One process: the same logits as the plain model under the same policy.
    local = ps.make_hybrid(LocalCommunicator(), model)
    numerical, categorical, _ = ps.make_batches((16,), seed=3)[0]
    expected = model({"numerical": numerical, "categorical": categorical})
    got = local.forward(tf.constant(numerical), tf.constant(categorical))
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_model_without_the_owned_tables_is_refused():
    from models.distributed.comm import LocalCommunicator
    from models.distributed.hybrid import HybridParallel
    from models.distributed.placement import plan_placement
    from models.dlrm import DLRM

    model = DLRM(
        (5, 6, 7), embedding_dim=4, bottom_mlp_dims=(4,), top_mlp_dims=(3, 1), table_ids=[0]
    )
    placement = plan_placement([100, 100, 100], 1)
    with pytest.raises(ValueError, match=r"owns tables \[1, 2\] but its model does not hold them"):
        HybridParallel(model, LocalCommunicator(), placement, global_batch_size=8)


def test_model_with_other_rows_than_the_placement_is_refused():
    placement = ps.split_placement()
    rank0 = placement.row_ranges(0)
    assert rank0 == {0: (0, 4), 3: (6, 13)}
    model = ps.build_model(table_ids=placement.tables_per_rank[0], row_ranges={0: (0, 4)})
    with pytest.raises(ValueError, match=r"rank 0: the placement gives it rows \[\(3, \(6, 13\)\)"):
        HybridParallel(model, _FakeComm(0, 2), placement, 16)
    hp = HybridParallel(ps.build_rank_model(placement, 0), _FakeComm(0, 2), placement, 16)
    # Rank 0 reads its whole tables' ids, then both split tables' (its slice of them).
    assert hp.input_tables == (1, 4, 0, 3)
    assert hp.owned_tables == (0, 1, 3, 4)
    assert hp.row_ranges == rank0
    assert "split tables [0, 3]" in hp.describe()
    # Per id: 8 bytes out, a float32 vector back and its gradient.
    assert hp.split_alltoall_bytes_per_step() == 16 * 2 * (8 + 2 * ps.DIM * 4)
