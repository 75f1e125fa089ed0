"""Multi-hot tables in the binary and synthetic datasets: column layout, padding, checks."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import feature_spec as fs
from models.data.binary import BinaryDataset
from models.data.metadata import DatasetError, load_metadata
from models.data.synthetic import SyntheticDataset
from models.data.synthetic_labels import id_effects, synthetic_logits
from models.data.writer import SplitArrays, write_dataset

CARDINALITIES = (5, 300, 40000)
HOTNESS = (1, 3, 2)


def _bags(rng: np.random.Generator, rows: int) -> np.ndarray:
    """[rows, 6] ids: table 0 one id, table 1 up to 3 padded, table 2 up to 2 padded."""
    columns = [rng.integers(0, 5, (rows, 1))]
    for rows_of_table, hotness in ((300, 3), (40000, 2)):
        ids = rng.integers(0, rows_of_table, (rows, hotness))
        lengths = rng.integers(0, hotness + 1, rows)  # 0 .. hotness valid ids, then padding
        ids[np.arange(hotness) >= lengths[:, None]] = fs.PAD_ID
        columns.append(ids)
    return np.concatenate(columns, axis=1)


def _write(root, rows=10):
    rng = np.random.default_rng(0)
    arrays = SplitArrays(rng.integers(0, 2, rows), rng.random((rows, 2)), _bags(rng, rows))
    write_dataset(root, {"train": arrays}, CARDINALITIES, hotness=HOTNESS)
    return arrays


def test_multi_hot_files_hold_hotness_ids_per_row_padded(tmp_path):
    arrays = _write(tmp_path)
    spec = load_metadata(tmp_path).spec
    assert spec.hotness == HOTNESS
    # Table 1 (int16): 3 ids per row, row-major, padding stored as PAD_ID.
    stored = np.fromfile(tmp_path / "train" / "cat_1.bin", "<i2").reshape(10, 3)
    np.testing.assert_array_equal(stored, arrays.categorical[:, 1:4])
    assert (stored == fs.PAD_ID).any()
    stored = np.fromfile(tmp_path / "train" / "cat_2.bin", "<i4").reshape(10, 2)
    np.testing.assert_array_equal(stored, arrays.categorical[:, 4:])


@pytest.mark.parametrize("world", [1, 2])
def test_reader_gives_hotness_columns_per_table_in_table_ids_order(tmp_path, world):
    arrays = _write(tmp_path)
    for rank in range(world):
        data = BinaryDataset(tmp_path, "train", 4, table_ids=[2, 0], rank=rank, world_size=world)
        assert data.element_spec[0]["categorical"].shape[1] == 3
        got = np.concatenate([f["categorical"].numpy() for f, _ in data.as_dataset()])
        np.testing.assert_array_equal(got, arrays.categorical[:, [4, 5, 0]])


def test_reader_rejects_ids_outside_the_table_but_accepts_padding(tmp_path):
    arrays = _write(tmp_path)
    assert (arrays.categorical[:, 1:4] == fs.PAD_ID).any()
    BinaryDataset(tmp_path, "train", 10).read_batch(0)  # padding is fine
    ids = arrays.categorical[:, 1:4].astype("<i2")
    ids[7, 2] = -2
    (tmp_path / "train" / "cat_1.bin").write_bytes(ids.tobytes())
    with pytest.raises(DatasetError, match=r"cat_1\.bin: row 7 holds id -2, outside .* or padding"):
        BinaryDataset(tmp_path, "train", 10).read_batch(0)
    # A single-valued table has no padding: -1 there is an error.
    single = arrays.categorical[:, 0].astype("<i1")
    single[3] = fs.PAD_ID
    (tmp_path / "train" / "cat_0.bin").write_bytes(single.tobytes())
    with pytest.raises(DatasetError, match=r"cat_0\.bin: row 3 holds id -1, outside table 0's"):
        BinaryDataset(tmp_path, "train", 10, table_ids=[0]).read_batch(0)


def test_writer_refuses_a_wrong_number_of_columns(tmp_path):
    rng = np.random.default_rng(0)
    arrays = SplitArrays(rng.integers(0, 2, 4), rng.random((4, 2)), np.zeros((4, 3), int))
    with pytest.raises(ValueError, match=r"categorical must be \[4, 6\] \(hotness \[1, 3, 2\]\)"):
        write_dataset(tmp_path, {"train": arrays}, CARDINALITIES, hotness=HOTNESS)


def test_synthetic_multi_hot_columns_and_world_size_independence():
    def dataset(**kwargs):
        return SyntheticDataset(16, 2, CARDINALITIES, num_numerical=2, hotness=HOTNESS, **kwargs)

    numerical, categorical, labels = dataset().global_batch(1)
    assert categorical.shape == (16, 6)
    assert (categorical >= 0).all()  # fixed hotness: every slot holds an id
    assert (categorical[:, 1:4] < 300).all() and (categorical[:, 4:] < 40000).all()
    assert len(np.unique(categorical[:, 4:])) > 16  # ids of a bag are drawn independently
    # Rank views: this rank's rows, the columns of its tables (table 1 = columns 1..3).
    for rank in range(2):
        num, cat, lab = dataset(rank=rank, world_size=2, table_ids=[1]).read_batch(1)
        np.testing.assert_array_equal(cat, categorical[:, 1:4])
        np.testing.assert_array_equal(num, numerical[rank * 8 : rank * 8 + 8])
        np.testing.assert_array_equal(lab, labels[rank * 8 : rank * 8 + 8])
    assert dataset(table_ids=[2, 0]).element_spec[0]["categorical"].shape == (16, 3)


def test_synthetic_multi_hot_label_uses_each_tables_mean_effect():
    ids = np.array([[1, 2, 3, 4, 5, 6]])
    numerical = np.zeros((1, 0), np.float32)
    tables = np.array([0, 1, 1, 1, 2, 2])
    effects = id_effects(ids, tables)[0]
    per_table = [effects[0], effects[1:4].mean(), effects[4:].mean()]
    expected = -1.5 + 2.0 * sum(per_table) / np.sqrt(3)
    np.testing.assert_allclose(synthetic_logits(numerical, ids, HOTNESS), [expected], rtol=1e-5)
    # Single-valued tables: the same function as before multi-hot existed.
    single = ids[:, :3]
    np.testing.assert_array_equal(
        synthetic_logits(numerical, single, (1, 1, 1)), synthetic_logits(numerical, single)
    )
