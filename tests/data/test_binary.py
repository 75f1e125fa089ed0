import os

import numpy as np
import pytest

from models.data.binary import BinaryDataset
from models.data.metadata import DatasetError, load_metadata
from tests.data.conftest import CARDINALITIES, NUM_NUMERICAL


def _collect(dataset, **kwargs):
    """Every element of ``dataset.as_dataset(**kwargs)`` as numpy triples."""
    return [
        (features["numerical"].numpy(), features["categorical"].numpy(), labels.numpy())
        for features, labels in dataset.as_dataset(**kwargs)
    ]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_cover_each_global_batch_exactly_once(dataset_factory, world):
    # 23 rows in batches of 5: four full batches and a short one of 3 rows,
    # which 3 ranks split as 1/1/1 and 2 ranks as 2/1.
    root, splits = dataset_factory()
    train = splits["train"]
    table_ids = [4, 0, 2]
    per_rank = [
        _collect(BinaryDataset(root, "train", 5, table_ids=table_ids, rank=rank, world_size=world))
        for rank in range(world)
    ]
    assert all(len(batches) == 5 for batches in per_rank)
    for index in range(5):
        rows = slice(index * 5, min(index * 5 + 5, 23))
        numerical = np.concatenate([batches[index][0] for batches in per_rank])
        labels = np.concatenate([batches[index][2] for batches in per_rank])
        np.testing.assert_array_equal(numerical, train.numerical[rows])
        np.testing.assert_array_equal(labels[:, 0], train.labels[rows].astype(np.float32))
        sizes = [len(batches[index][2]) for batches in per_rank]
        assert max(sizes) - min(sizes) <= 1
        for batches in per_rank:  # every rank gets the whole batch's ids of its tables
            np.testing.assert_array_equal(batches[index][1], train.categorical[rows][:, table_ids])
    assert [len(batches[4][2]) for batches in per_rank] == {1: [3], 2: [2, 1], 3: [1, 1, 1]}[world]


def test_element_dtypes_and_shapes(dataset_factory):
    root, _ = dataset_factory()
    features, labels = next(
        iter(BinaryDataset(root, "train", 8, rank=1, world_size=3).as_dataset())
    )
    assert features["numerical"].dtype.name == "float32"
    assert features["categorical"].dtype.name == "int32"
    assert labels.dtype.name == "float32"
    assert features["numerical"].shape == (3, NUM_NUMERICAL)  # 8 rows -> 3/3/2
    assert features["categorical"].shape == (8, len(CARDINALITIES))
    assert labels.shape == (3, 1)


def test_static_shapes_when_every_batch_is_full(dataset_factory):
    root, _ = dataset_factory()
    dropped = BinaryDataset(root, "train", 5, rank=2, world_size=3, drop_remainder=True)
    features, labels = dropped.element_spec
    assert features["numerical"].shape.as_list() == [1, NUM_NUMERICAL]
    assert features["categorical"].shape.as_list() == [5, len(CARDINALITIES)]
    assert labels.shape.as_list() == [1, 1]
    assert len(dropped) == 4
    assert len(_collect(dropped)) == 4
    ragged = BinaryDataset(root, "train", 5)
    assert ragged.element_spec[1].shape.as_list() == [None, 1]
    assert len(ragged) == 5


def test_read_batch_matches_dataset_and_files(dataset_factory):
    root, splits = dataset_factory()
    test = splits["test"]
    dataset = BinaryDataset(root, "test", 4, table_ids=[5, 1])
    numerical, categorical, labels = dataset.read_batch(2)  # rows 8..9
    np.testing.assert_array_equal(numerical, test.numerical[8:10])
    np.testing.assert_array_equal(categorical, test.categorical[8:10][:, [5, 1]])
    np.testing.assert_array_equal(labels[:, 0], test.labels[8:10])
    with pytest.raises(IndexError, match=r"batch 3 out of range \[0, 3\)"):
        dataset.read_batch(3)


def test_resume_at_start_batch(dataset_factory):
    root, _ = dataset_factory()
    dataset = BinaryDataset(root, "train", 5)
    full = _collect(dataset)
    resumed = _collect(dataset, start_batch=3)
    assert len(resumed) == 2
    for got, want in zip(resumed, full[3:], strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    assert _collect(dataset, start_batch=5) == []
    with pytest.raises(ValueError, match=r"start_batch must be in \[0, 5\], got 6"):
        dataset.as_dataset(start_batch=6)


def test_shuffled_batch_order_is_a_seeded_permutation_per_epoch(dataset_factory):
    root, _ = dataset_factory()
    plain = _collect(BinaryDataset(root, "train", 2))
    # Numericals are distinct enough to identify a batch.
    index_of = {batch[0].tobytes(): i for i, batch in enumerate(plain)}
    assert len(index_of) == 12

    def order(seed, epoch, start_batch=0):
        batches = _collect(
            BinaryDataset(root, "train", 2, shuffle=True, seed=seed),
            epoch=epoch,
            start_batch=start_batch,
        )
        return [index_of[batch[0].tobytes()] for batch in batches]

    epoch0 = order(seed=7, epoch=0)
    assert sorted(epoch0) == list(range(12))
    assert epoch0 != list(range(12))
    assert order(seed=7, epoch=0) == epoch0
    assert order(seed=7, epoch=1) != epoch0
    assert order(seed=8, epoch=0) != epoch0
    assert order(seed=7, epoch=0, start_batch=9) == epoch0[9:]


def test_nvidia_layout_reads_the_same_batches(dataset_factory):
    ours, _ = dataset_factory(name="ours")
    nvidia, _ = dataset_factory(source="nvidia", name="nvidia")
    for a, b in zip(
        _collect(BinaryDataset(ours, "validation", 3, rank=1, world_size=2)),
        _collect(BinaryDataset(nvidia, "validation", 3, rank=1, world_size=2)),
        strict=True,
    ):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_given_metadata_is_used_and_its_split_checked(dataset_factory):
    root, splits = dataset_factory()
    metadata = load_metadata(root)
    (root / "test" / "label.bin").write_bytes(b"\x01")
    dataset = BinaryDataset(root, "train", 30, metadata=metadata)
    np.testing.assert_array_equal(dataset.read_batch(0)[2][:, 0], splits["train"].labels)
    with pytest.raises(DatasetError, match=r"label\.bin: expected 10 bytes for 10 rows, got 1"):
        BinaryDataset(root, "test", 30, metadata=metadata)


def test_missing_file_fails_at_construction(dataset_factory):
    root, _ = dataset_factory()
    (root / "train" / "cat_3.bin").unlink()
    with pytest.raises(DatasetError, match=r"cat_3\.bin: missing \(expected 46 bytes\)"):
        BinaryDataset(root, "train", 4)


def test_file_truncated_after_opening_gives_a_short_read_error(dataset_factory):
    root, _ = dataset_factory()
    dataset = BinaryDataset(root, "train", 10)
    os.truncate(root / "train" / "numerical.bin", 20 * NUM_NUMERICAL * 2)
    dataset.read_batch(1)  # rows 10..19 are still there
    with pytest.raises(DatasetError, match=r"numerical\.bin: short read, wanted bytes 120\.\.137"):
        dataset.read_batch(2)


def test_out_of_range_ids_and_labels_are_reported_with_file_and_row(dataset_factory):
    root, _ = dataset_factory()
    ids = np.fromfile(root / "train" / "cat_3.bin", np.int16)
    ids[17] = 300  # table 3 has 300 rows
    ids.tofile(root / "train" / "cat_3.bin")
    dataset = BinaryDataset(root, "train", 10)
    with pytest.raises(
        DatasetError, match=r"cat_3\.bin: row 17 holds id 300, outside .*\[0, 300\)"
    ):
        dataset.read_batch(1)
    unchecked = BinaryDataset(root, "train", 10, check_ids=False)
    assert unchecked.read_batch(1)[1][7, 3] == 300
    labels = np.fromfile(root / "train" / "label.bin", np.uint8)
    labels[2] = 7
    labels.tofile(root / "train" / "label.bin")
    with pytest.raises(DatasetError, match=r"label\.bin: rows 0\.\.9 hold label bytes other"):
        dataset.read_batch(0)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_numerical_is_reported_with_file_row_and_column(dataset_factory, value):
    root, splits = dataset_factory()
    numerical = np.fromfile(root / "train" / "numerical.bin", np.float16)
    numerical[14 * NUM_NUMERICAL + 2] = value  # row 14, column 2
    numerical.tofile(root / "train" / "numerical.bin")
    dataset = BinaryDataset(root, "train", 10)
    dataset.read_batch(0)  # rows 0..9 are finite
    with pytest.raises(
        DatasetError, match=rf"numerical\.bin: row 14 column 2 holds {value}, not a finite"
    ):
        dataset.read_batch(1)
    # Rank 1 of 2 reads rows 15..19 of that batch: not the bad row.
    np.testing.assert_array_equal(
        BinaryDataset(root, "train", 10, rank=1, world_size=2).read_batch(1)[0],
        splits["train"].numerical[15:20],
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"global_batch_size": 0}, "global_batch_size must be >= 1, got 0"),
        ({"rank": 2, "world_size": 2}, r"rank must be in \[0, 2\), got 2"),
        ({"table_ids": [0, 6, 9]}, r"table_ids \[6, 9\] out of range: the dataset has 6 tables"),
        ({"table_ids": [1, 1]}, r"table_ids must be unique, got \[1, 1\]"),
        ({"global_batch_size": 24, "drop_remainder": True}, "fewer than one batch of 24"),
        ({"prefetch_batches": 0}, "must be >= 1, got 0 and 2"),
    ],
)
def test_invalid_arguments(dataset_factory, kwargs, message):
    root, _ = dataset_factory()
    arguments = {"global_batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        BinaryDataset(root, "train", **arguments)


def test_unknown_split(dataset_factory):
    root, _ = dataset_factory(split_rows={"train": 3})
    with pytest.raises(DatasetError, match=r"'test' is not in"):
        BinaryDataset(root, "test", 4)


def test_rank_without_tables_and_empty_split(dataset_factory):
    root, splits = dataset_factory(split_rows={"train": 6, "test": 0})
    numerical, categorical, labels = BinaryDataset(root, "train", 6, table_ids=[]).read_batch(0)
    assert categorical.shape == (6, 0)
    np.testing.assert_array_equal(numerical, splits["train"].numerical)
    np.testing.assert_array_equal(labels[:, 0], splits["train"].labels)
    empty = BinaryDataset(root, "test", 4)
    assert len(empty) == 0
    assert _collect(empty) == []


def test_close_releases_files(dataset_factory):
    root, _ = dataset_factory()
    with BinaryDataset(root, "train", 4) as dataset:
        dataset.read_batch(0)
    with pytest.raises(KeyError):
        dataset.read_batch(0)
