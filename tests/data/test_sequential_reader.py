"""The TensorFlow-op reader (file order) against ``read_batch`` and the files' bytes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from dlrm_main import dataset_error_in
from models.data import feature_spec as fs
from models.data import pipeline
from models.data.binary import BinaryDataset
from models.data.metadata import DatasetError
from models.data.writer import SplitArrays, write_dataset
from tests.data.conftest import CARDINALITIES, NUM_NUMERICAL


def _elements(dataset):
    return [
        (features["numerical"].numpy(), features["categorical"].numpy(), labels.numpy())
        for features, labels in dataset
    ]


def _assert_same(got, want):
    assert len(got) == len(want)
    for a_batch, b_batch in zip(got, want, strict=True):
        for a, b in zip(a_batch, b_batch, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def _graph_ops(dataset: tf.data.Dataset) -> str:
    return dataset._as_serialized_graph().numpy().decode("latin-1")


@pytest.mark.parametrize("batch", [1, 5, 7, 30])
@pytest.mark.parametrize("world", [1, 3])
def test_every_rank_batch_and_resume_point_matches_read_batch(dataset_factory, batch, world):
    root, _ = dataset_factory()
    for rank in range(world):
        for drop in (False, True):
            if drop and batch > 23:
                continue
            data = BinaryDataset(
                root, "train", batch, table_ids=[3, 5, 0], rank=rank, world_size=world,
                drop_remainder=drop,
            )  # fmt: skip
            for start in sorted({0, 1, len(data) - 1, len(data)}):
                if start < 0:
                    continue
                dataset = data.as_dataset(start_batch=start)
                got = _elements(dataset)
                want = [data.read_batch(i) for i in range(start, len(data))]
                _assert_same(got, want)
                assert dataset.element_spec == data.element_spec


def test_elements_equal_the_files_bytes_across_ranks(dataset_factory):
    # Independent of read_batch: numpy reads of the files, sliced by hand.
    root, _ = dataset_factory()
    train = root / "train"
    labels = np.fromfile(train / "label.bin", np.uint8)
    numerical = np.fromfile(train / "numerical.bin", "<f2").reshape(23, NUM_NUMERICAL)
    dtypes = [fs.categorical_dtype(n) for n in CARDINALITIES]
    ids = [np.fromfile(train / f"cat_{t}.bin", dtypes[t]) for t in (4, 1)]
    # Batch 5 on 2 ranks: rows 3/2 of a full batch, 2/1 of the short last one (rows 20..22).
    slices = {0: [(0, 3)] * 2 + [(0, 2)], 1: [(3, 5)] * 2 + [(2, 3)]}
    for rank in (0, 1):
        data = BinaryDataset(root, "train", 5, table_ids=[4, 1], rank=rank, world_size=2)
        got = _elements(data.as_dataset(start_batch=2))
        assert len(got) == 3
        for (num, cat, lab), batch, (lo, hi) in zip(got, (2, 3, 4), slices[rank], strict=True):
            rows = np.arange(batch * 5, min(batch * 5 + 5, 23))
            mine = rows[lo:hi]
            np.testing.assert_array_equal(lab[:, 0], labels[mine].astype(np.float32))
            np.testing.assert_array_equal(num, numerical[mine].astype(np.float32))
            np.testing.assert_array_equal(cat, np.stack([i[rows] for i in ids], 1))


def test_multi_hot_columns_and_padding(tmp_path):
    rng = np.random.default_rng(3)
    rows, hotness, cardinalities = 11, (2, 1, 3), (300, 5, 40000)
    bags = [rng.integers(0, n, (rows, h)) for n, h in zip(cardinalities, hotness, strict=True)]
    bags[0][rng.random((rows, 2)) < 0.4] = fs.PAD_ID
    bags[2][:, 2] = fs.PAD_ID
    categorical = np.concatenate(bags, axis=1)
    arrays = SplitArrays(rng.integers(0, 2, rows), rng.random((rows, 2)), categorical)
    write_dataset(tmp_path, {"train": arrays}, cardinalities, hotness=hotness)
    for world in (1, 2):
        for rank in range(world):
            data = BinaryDataset(
                tmp_path, "train", 4, table_ids=[2, 0], rank=rank, world_size=world
            )
            got = _elements(data.as_dataset())
            _assert_same(got, [data.read_batch(i) for i in range(len(data))])
            np.testing.assert_array_equal(
                np.concatenate([c for _, c, _ in got]), categorical[:, [3, 4, 5, 0, 1]]
            )


def test_file_order_runs_no_python_and_shuffled_order_reads_with_read_batch(dataset_factory):
    root, _ = dataset_factory()
    data = BinaryDataset(root, "train", 4)
    plain = data.as_dataset()
    assert "FixedLengthRecordDataset" in _graph_ops(plain)
    assert "PyFunc" not in _graph_ops(plain)
    # Built once per start batch, iterated any number of times.
    assert data.as_dataset(epoch=3) is plain and data.as_dataset(start_batch=1) is not plain
    _assert_same(_elements(plain), _elements(plain))
    assert len(_elements(plain)) == 6
    data = BinaryDataset(root, "train", 4, shuffle=True, seed=5)
    shuffled = data.as_dataset(epoch=2, start_batch=1)
    order = pipeline.batch_order(len(data), 1, True, 5, 2)
    _assert_same(_elements(shuffled), [data.read_batch(int(i)) for i in order])


def _error_of(dataset) -> str:
    """The one-line message `dlrm_main` prints for the failure of iterating ``dataset``."""
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        _elements(dataset)
    message = dataset_error_in(raised.value)
    assert message is not None, raised.value.message
    return message


def _read_batch_error(data: BinaryDataset, index: int) -> str:
    with pytest.raises(DatasetError) as raised:
        data.read_batch(index)
    return str(raised.value)


def test_bad_bytes_give_the_same_message_as_read_batch(dataset_factory):
    root, _ = dataset_factory()
    train = root / "train"
    data = BinaryDataset(root, "train", 10, rank=1, world_size=2)
    numerical = np.fromfile(train / "numerical.bin", np.float16)
    numerical[17 * NUM_NUMERICAL + 1] = -np.inf  # row 17 (rank 1's half of batch 1), column 1
    numerical.tofile(train / "numerical.bin")
    message = _error_of(data.as_dataset())
    assert message == _read_batch_error(data, 1)
    assert message == f"{train / 'numerical.bin'}: row 17 column 1 holds -inf, not a finite number"
    # Rank 0 reads rows 10..14 of that batch: no error.
    assert len(_elements(BinaryDataset(root, "train", 10, world_size=2).as_dataset())) == 3

    ids = np.fromfile(train / "cat_4.bin", np.int32)
    ids[21] = 32767  # table 4 has 32767 rows
    ids.tofile(train / "cat_4.bin")
    data = BinaryDataset(root, "train", 10, table_ids=[4], rank=0, world_size=2)
    message = _error_of(data.as_dataset())
    assert message == _read_batch_error(data, 2)
    assert message == f"{train / 'cat_4.bin'}: row 21 holds id 32767, outside table 4's [0, 32767)"
    unchecked = BinaryDataset(root, "train", 10, table_ids=[4], world_size=2, check_ids=False)
    assert _elements(unchecked.as_dataset())[2][1][1, 0] == 32767

    labels = np.fromfile(train / "label.bin", np.uint8)
    labels[3] = 2
    labels.tofile(train / "label.bin")
    data = BinaryDataset(root, "train", 10, table_ids=[], rank=0, world_size=2)
    message = _error_of(data.as_dataset())
    assert message == _read_batch_error(data, 0)
    assert message == f"{train / 'label.bin'}: rows 0..4 hold label bytes other than 0 and 1"


def test_multi_hot_padding_is_allowed_only_in_multi_hot_tables(tmp_path):
    rows = 6
    categorical = np.array([[0, 1, fs.PAD_ID]] * rows)
    arrays = SplitArrays(np.zeros(rows), np.zeros((rows, 1)), categorical)
    write_dataset(tmp_path, {"train": arrays}, (5, 7), hotness=(1, 2))
    assert len(_elements(BinaryDataset(tmp_path, "train", 4).as_dataset())) == 2
    ids = np.fromfile(tmp_path / "train" / "cat_0.bin", np.int8)
    ids[4] = fs.PAD_ID
    ids.tofile(tmp_path / "train" / "cat_0.bin")
    message = _error_of(BinaryDataset(tmp_path, "train", 4).as_dataset())
    assert message == (
        f"{tmp_path / 'train' / 'cat_0.bin'}: row 4 holds id -1, outside table 0's [0, 5)"
    )


@pytest.mark.parametrize(
    ("keep_rows", "detail"),
    [
        (13, "wanted bytes 60..119 but the file ends before them"),  # a whole batch missing
        (17, "the file now ends at byte 102, inside a batch"),
    ],
)
def test_a_file_truncated_after_opening_is_a_short_read(dataset_factory, keep_rows, detail):
    root, _ = dataset_factory()
    path = root / "train" / "numerical.bin"
    data = BinaryDataset(root, "train", 10, table_ids=[])
    os.truncate(path, keep_rows * NUM_NUMERICAL * 2)
    message = _error_of(data.as_dataset())
    assert message.startswith(f"{path}: short read, {detail} ")
    assert message.endswith("(was it truncated after the dataset was opened?)")
    assert "\n" not in message
