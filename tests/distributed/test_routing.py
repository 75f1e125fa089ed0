"""Routing of ids to row shards, against numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.distributed.placement import plan_placement
from models.distributed.routing import (
    SplitLayout,
    local_rows,
    route_ids,
    shard_index,
    unroute,
)


def _numpy_route(ids, starts, ranks, world):
    shard = np.searchsorted(starts, ids, side="right") - 1
    destination = np.asarray(ranks)[shard]
    order = np.argsort(destination, kind="stable")
    return ids[order], np.bincount(destination, minlength=world), order


def test_shard_index_at_range_boundaries():
    starts = tf.constant([0, 4, 7], tf.int64)
    ids = tf.constant([0, 3, 4, 6, 7, 9, 4, 0], tf.int64)
    # An id equal to a range's start belongs to that range; the last id of a
    # range to the range before.
    assert shard_index(ids, starts).numpy().tolist() == [0, 0, 1, 1, 2, 2, 1, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_route_matches_numpy_with_duplicates_and_boundaries(seed):
    rng = np.random.default_rng(seed)
    starts = np.array([0, 5, 9, 20], np.int64)  # 4 shards of a 25-row virtual space
    ranks = np.array([2, 0, 1, 2], np.int32)  # rank 2 holds two (of different tables)
    boundaries = np.array([0, 4, 5, 8, 9, 19, 20, 24], np.int64)
    ids = np.concatenate([rng.integers(0, 25, size=40), boundaries, boundaries[:3]])
    rng.shuffle(ids)
    routed = route_ids(tf.constant(ids), tf.constant(starts), tf.constant(ranks), world_size=3)
    expected_ids, expected_counts, expected_order = _numpy_route(ids, starts, ranks, 3)
    np.testing.assert_array_equal(routed.ids.numpy(), expected_ids)
    np.testing.assert_array_equal(routed.counts.numpy(), expected_counts)
    np.testing.assert_array_equal(routed.order.numpy(), expected_order)
    assert routed.counts.dtype == tf.int32 and int(routed.counts.numpy().sum()) == len(ids)

    # Vectors computed in routed order come back to the input positions.
    values = np.stack([expected_ids * 10.0, expected_ids + 0.5], axis=1).astype(np.float32)
    back = unroute(tf.constant(values), routed.order).numpy()
    np.testing.assert_array_equal(back, np.stack([ids * 10.0, ids + 0.5], axis=1))


def test_route_with_no_ids_for_some_rank_and_empty_input():
    starts, ranks = tf.constant([0, 10], tf.int64), tf.constant([0, 1])
    routed = route_ids(tf.constant([3, 3, 9], tf.int64), starts, ranks, world_size=2)
    assert routed.counts.numpy().tolist() == [3, 0]
    empty = route_ids(tf.zeros([0], tf.int64), starts, ranks, world_size=2)
    assert empty.counts.numpy().tolist() == [0, 0] and empty.ids.shape == [0]
    assert unroute(tf.zeros([0, 4]), empty.order).shape == [0, 4]


def test_unroute_gradient_is_the_routed_gradient():
    order = tf.constant([2, 0, 1])
    values = tf.Variable([[1.0], [2.0], [3.0]])
    with tf.GradientTape() as tape:
        out = unroute(values, order)  # [[2], [3], [1]]
        loss = tf.reduce_sum(out * tf.constant([[1.0], [10.0], [100.0]]))
    np.testing.assert_array_equal(out.numpy(), [[2.0], [3.0], [1.0]])
    grad = tape.gradient(loss, values)
    assert isinstance(grad, tf.Tensor)  # dense: the backward all-to-all sends it as is
    np.testing.assert_array_equal(grad.numpy(), [[100.0], [1.0], [10.0]])


def test_local_rows_against_numpy():
    local_starts = np.array([5, 30], np.int64)  # two local shards: [5, 9) and [30, 42)
    ids = np.array([5, 8, 30, 41, 6, 30, 8], np.int64)
    shard, row = local_rows(tf.constant(ids), tf.constant(local_starts))
    expected_shard = np.searchsorted(local_starts, ids, side="right") - 1
    np.testing.assert_array_equal(shard.numpy(), expected_shard)
    np.testing.assert_array_equal(row.numpy(), ids - local_starts[expected_shard])
    assert row.numpy().tolist() == [0, 3, 0, 11, 1, 0, 3]


def test_split_layout_from_placement():
    # Tables of 10, 2 and 6 rows (12 bytes a row); tables 0 and 2 exceed 60 bytes.
    placement = plan_placement([120, 24, 72], world_size=4, budget_bytes=60, table_rows=[10, 2, 6])
    assert placement.split_tables == (0, 2)
    layouts = [SplitLayout.from_placement(placement, r) for r in range(4)]
    layout = layouts[0]
    assert layout.tables == (0, 2)
    assert layout.bases == (0, 10)  # table 2's row 0 is virtual id 10
    shards = [s for s in placement.shards if s.table in (0, 2)]
    assert layout.starts == tuple((0 if s.table == 0 else 10) + s.row_start for s in shards)
    assert layout.ranks == tuple(s.rank for s in shards)
    # Every shard is local to exactly the rank that holds it.
    local = sorted((t, a, b) for lay in layouts for t, a, b, _ in lay.local)
    assert local == sorted((s.table, s.row_start, s.row_end) for s in shards)
    for rank, lay in enumerate(layouts):
        for table, start, end, virtual in lay.local:
            assert virtual == lay.bases[lay.tables.index(table)] + start
            assert lay.row_range(table) == (start, end)
            assert rank in placement.owners(table)
    assert layouts[0].row_range(1) is None
