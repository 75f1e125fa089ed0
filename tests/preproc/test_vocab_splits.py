import numpy as np
import pytest

from models.data.feature_spec import categorical_dtype, model_size
from preproc.config import parse_thresholds
from preproc.splits import plan_splits, split_rule
from preproc.units import Unit
from preproc.vocab import VocabLookup, build_vocab, lookup, merge_counts, reduce_counts


def test_vocab_orders_by_count_then_value_and_applies_threshold():
    values = np.array([5, 9, 2, 7, 3], np.uint32)
    counts = np.array([4, 4, 9, 1, 2], np.int64)
    vocab, sorted_values, ids = build_vocab(
        values[np.argsort(values)], counts[np.argsort(values)], 2
    )
    assert vocab.tolist() == [2, 5, 9, 3]  # 9 times, then the tie 5/9 by value, then 3
    query = np.array([9, 7, 2, 3, 5, 100, 2], np.uint32)
    missing = np.array([0, 0, 0, 0, 0, 0, 1], bool)
    assert lookup(sorted_values, ids, query, missing).tolist() == [3, 0, 1, 4, 2, 0, 0]


def test_empty_vocab_maps_everything_to_zero():
    vocab, sorted_values, ids = build_vocab(np.array([1], np.uint32), np.array([1]), 5)
    assert vocab.size == 0
    out = lookup(sorted_values, ids, np.array([1, 2], np.uint32), np.zeros(2, bool))
    assert out.tolist() == [0, 0]


def test_merge_counts_equals_one_big_count():
    rng = np.random.default_rng(0)
    parts, everything = [], []
    for _ in range(20):
        values = rng.integers(0, 1000, 500).astype(np.uint32)
        everything.append(values)
        u, c = np.unique(values, return_counts=True)
        parts.append((u, c.astype(np.uint32)))
    merged = merge_counts(parts)
    expected = np.unique(np.concatenate(everything), return_counts=True)
    np.testing.assert_array_equal(merged[0], expected[0])
    np.testing.assert_array_equal(merged[1], expected[1])
    assert reduce_counts(np.zeros(0, np.uint32), np.zeros(0))[0].size == 0


@pytest.mark.parametrize(
    ("rows", "dtype"),
    [
        (1, "int8"),
        (126, "int8"),
        (127, "int16"),
        (32766, "int16"),
        (32767, "int32"),
        (10**6, "int32"),
    ],
)
def test_categorical_dtype_is_nvidia_rule(rows, dtype):
    assert categorical_dtype(rows).name == dtype


def test_model_size_is_largest_id_per_nvidia_column():
    sizes = model_size([3] * 25 + [1])
    assert list(sizes) == [f"_c{i}" for i in range(14, 40)]
    assert sizes["_c14"] == 2 and sizes["_c39"] == 0


def test_thresholds_parsing():
    assert parse_thresholds(15, ["0=20,3=5", "25=1"])[:4] == (20, 15, 15, 5)
    assert parse_thresholds(15, None)[25] == 15
    with pytest.raises(ValueError, match="INDEX=THRESHOLD"):
        parse_thresholds(15, ["0:20"])
    with pytest.raises(ValueError, match=r"0\.\.25"):
        parse_thresholds(15, ["26=3"])


def test_fraction_split_cuts_across_units():
    units = [Unit(i, 0, "x.tsv", 0, 1, False) for i in range(3)]
    ranges = plan_splits(["x.tsv"], units, [4, 3, 3], 0.25)
    # 10 rows: last round(2.5)=3 go to test
    assert ranges == [[("train", 0, 4)], [("train", 0, 3)], [("test", 0, 3)]]
    ranges = plan_splits(["x.tsv"], units, [4, 3, 3], 0.45)
    assert ranges == [[("train", 0, 4)], [("train", 0, 1), ("test", 1, 3)], [("test", 0, 3)]]


def test_day_rule_needs_all_inputs_named_day():
    assert split_rule(["a/day_0", "a/day_1.gz"]) == "days"
    assert split_rule(["a/day_0"]) == "fraction"
    assert split_rule(["a/day_0", "a/train.txt"]) == "fraction"
    units = [Unit(0, 0, "day_1", 0, 1, False), Unit(1, 1, "day_0", 0, 1, False)]
    units += [Unit(2, 1, "day_0", 1, 2, False)]
    # the highest-numbered day is split, whatever its position in the list
    ranges = plan_splits(["day_1", "day_0"], units, [5, 2, 2], 0.1)
    assert ranges == [[("test", 0, 3), ("validation", 3, 5)], [("train", 0, 2)], [("train", 0, 2)]]


@pytest.mark.parametrize("hash_max", [0, 1 << 20])
def test_hash_and_binary_search_lookups_agree(hash_max):
    rng = np.random.default_rng(3)
    values = np.unique(rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32))
    counts = rng.integers(1, 50, values.size)
    _, sorted_values, ids = build_vocab(values, counts, 10)
    table = VocabLookup(sorted_values, ids, hash_max=hash_max)
    assert (table.index is None) == (hash_max == 0)
    unseen = rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32)
    query = np.concatenate([values, unseen])
    missing = rng.random(query.size) < 0.1
    expected = lookup(sorted_values, ids, query, missing)
    np.testing.assert_array_equal(table(query, missing), expected)
    assert (expected > 0).sum() > 100
