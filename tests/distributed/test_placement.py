"""Unit tests of the pure placement planner (no TensorFlow, no Horovod)."""

from __future__ import annotations

import itertools
import json

import pytest

from models.data.criteo import BENCH_CARDINALITIES
from models.distributed.placement import (
    Shard,
    embedding_budget_bytes,
    embedding_table_bytes,
    plan_placement,
)

CRITEO_CAPPED = list(BENCH_CARDINALITIES)


def test_single_rank_owns_everything():
    placement = plan_placement([40, 10, 30], world_size=1)
    assert placement.owner_of == (0, 0, 0)
    assert placement.tables_per_rank == ((0, 1, 2),)
    assert placement.bytes_per_rank == (80,)
    assert placement.split_tables == ()


def test_greedy_largest_first_to_least_loaded_rank():
    # Sorted: t1=50 -> r0, t3=40 -> r1, t0=30 -> r1 (40 < 50), t2=20 -> r0 (50 < 70).
    placement = plan_placement([30, 50, 20, 40], world_size=2)
    assert placement.owner_of == (1, 0, 0, 1)
    assert placement.tables_per_rank == ((1, 2), (0, 3))
    assert placement.bytes_per_rank == (70, 70)


def test_ties_go_to_lower_table_and_lower_rank():
    placement = plan_placement([8, 8, 8, 8], world_size=3)
    assert placement.owner_of == (0, 1, 2, 0)


def test_balance_on_criteo_sizes_is_close_to_half():
    sizes = embedding_table_bytes(CRITEO_CAPPED, 128)
    placement = plan_placement(sizes, world_size=2)
    total = sum(sizes)
    assert sum(placement.bytes_per_rank) == total
    # Greedy LPT: the heavier rank exceeds the mean by at most the largest table.
    assert max(placement.bytes_per_rank) - total / 2 <= max(sizes)
    assert max(placement.bytes_per_rank) / (total / 2) < 1.05
    assert sorted(itertools.chain(*placement.tables_per_rank)) == list(range(26))


def test_more_ranks_than_tables_leaves_ranks_empty():
    placement = plan_placement([5, 7], world_size=4)
    assert placement.tables_per_rank == ((1,), (0,), (), ())
    assert "rank 3: 0 tables" in placement.describe()


def test_budget_respected_when_it_fits():
    placement = plan_placement([60, 50, 40, 30], world_size=2, budget_bytes=90)
    assert max(placement.bytes_per_rank) <= 90
    assert placement.budget_bytes == 90


def test_budget_impossible_names_table_size_and_budget():
    with pytest.raises(
        ValueError, match=r"table 2 \(40 bytes\).*rank 1 already holds 50 bytes of a 70-byte"
    ):
        plan_placement([60, 50, 40, 30], world_size=2, budget_bytes=70)


def test_table_over_budget_without_rows_fails_with_sizes():
    with pytest.raises(ValueError, match=r"table 1 is 500 bytes, larger than .* 100 bytes"):
        plan_placement([10, 500], world_size=8, budget_bytes=100)


def test_table_over_budget_is_split_by_rows():
    # Table 0: 10 rows of 12 bytes = 120 bytes, budget 50 -> 3 shards of 4, 3, 3 rows
    # (48, 36, 36 bytes); table 1: 2 rows of 12 bytes.
    placement = plan_placement([120, 24], world_size=4, budget_bytes=50, table_rows=[10, 2])
    assert placement.split_tables == (0,)
    shards0 = [s for s in placement.shards if s.table == 0]
    assert [(s.row_start, s.row_end, s.nbytes) for s in shards0] == [
        (0, 4, 48),
        (4, 7, 36),
        (7, 10, 36),
    ]
    assert len(set(placement.owners(0))) == 3
    assert max(placement.bytes_per_rank) <= 50
    assert sum(placement.bytes_per_rank) == 144
    assert placement.shards[-1] == Shard(1, 0, 2, 24, 3)
    assert "table 0 split by rows: rows [0, 4) -> rank 0" in placement.describe()
    with pytest.raises(ValueError, match="split by rows"):
        _ = placement.owner_of


def test_split_that_still_does_not_fit_fails():
    # 3 shards (48, 36, 36 bytes) and a 45-byte table on 3 ranks of 50 bytes: the
    # last shard finds only ranks already holding 45 or a shard of table 0.
    with pytest.raises(ValueError, match=r"cannot place table 0 rows \[7, 10\) \(36 bytes\)"):
        plan_placement([120, 45], world_size=3, budget_bytes=50, table_rows=[10, 9])


def test_split_needing_more_shards_than_ranks_fails():
    with pytest.raises(ValueError, match="table 0 needs more row shards than the 2 rank"):
        plan_placement([120], world_size=2, budget_bytes=50, table_rows=[10])


def test_a_rank_holds_at_most_one_shard_of_a_table():
    # 200 bytes in 20-byte rows, budget 110: 2 shards of 100 bytes. The two small
    # tables go first to ranks 0 and 1 (largest first puts the shards before them),
    # and the second shard must skip rank 0 although rank 0 is as loaded as rank 2.
    placement = plan_placement([200, 10, 10], world_size=3, budget_bytes=110, table_rows=[10, 1, 1])
    assert placement.owners(0) == (0, 1)
    for rank in range(3):
        held = [s.table for s in placement.shards if s.rank == rank]
        assert len(held) == len(set(held))


def test_split_shards_count_in_the_balance():
    # Table 0 (96 bytes, 8 rows) splits into 48 + 48 bytes on ranks 0 and 1; both
    # smaller tables then go to rank 2, the least loaded with the shards counted.
    placement = plan_placement([96, 30, 20], world_size=3, budget_bytes=80, table_rows=[8, 3, 2])
    assert [(s.table, s.row_start, s.row_end, s.rank) for s in placement.shards] == [
        (0, 0, 4, 0),
        (0, 4, 8, 1),
        (1, 0, 3, 2),
        (2, 0, 2, 2),
    ]
    assert placement.bytes_per_rank == (48, 48, 50)


def test_row_larger_than_budget_fails():
    with pytest.raises(ValueError, match="one row is 64 bytes"):
        plan_placement([128], world_size=4, budget_bytes=50, table_rows=[2])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], 2), "no tables"),
        (([10], 0), "world_size"),
        (([10, -1], 2), r"\(1, -1\)"),
        (([10], 2, 0), "budget_bytes"),
        (([10, 20], 2, None, [5]), "table_rows has 1 entries"),
        (([10], 2, None, [3]), "not a whole number of rows"),
    ],
)
def test_invalid_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        plan_placement(*args)


def test_describe_lists_every_rank_and_bytes():
    text = plan_placement([3 * 1024**2, 1024], world_size=2).describe()
    assert "2 tables, 3.0 MiB over 2 rank(s)" in text
    assert "rank 0: 1 tables, 3.0 MiB (3145728 B): 0" in text
    assert "rank 1: 1 tables, 1.0 KiB (1024 B): 1" in text


def test_to_dict_is_json_ready():
    placement = plan_placement([120, 24], world_size=4, budget_bytes=50, table_rows=[10, 2])
    summary = json.loads(json.dumps(placement.to_dict()))
    assert summary["bytes_per_rank"] == list(placement.bytes_per_rank)
    assert summary["tables_per_rank"] == [list(t) for t in placement.tables_per_rank]
    assert summary["split_tables"] == {"0": [[0, 4, 0], [4, 7, 1], [7, 10, 2]]}
    assert summary["total_bytes"] == 144


def test_memory_budget_leaves_room_for_optimizer_slots_and_activations():
    gib = 2**30
    # SGD: the weights alone may use three quarters of the memory.
    assert embedding_budget_bytes(16, 0) == 12 * gib
    # Adam keeps two slots per table: a third of that for the weights.
    assert embedding_budget_bytes(16, 2) == 4 * gib
    assert embedding_budget_bytes(1, 1, fraction=0.5) == gib // 4
    budget = embedding_budget_bytes(1, 2)
    assert 3 * budget <= 0.75 * gib < 3 * (budget + 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0), "memory_limit_gb must be positive"),
        ((4, -1), "slots_per_table must be >= 0"),
        ((4, 1.5), "slots_per_table must be an integer"),
        ((4, 1, 0.0), r"fraction must be in \(0, 1\]"),
        ((4, 1, 1.5), r"fraction must be in \(0, 1\]"),
    ],
)
def test_memory_budget_rejects_invalid_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        embedding_budget_bytes(*args)
