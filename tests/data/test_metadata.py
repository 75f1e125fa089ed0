import json

import numpy as np
import pytest

from models.data import feature_spec as fs
from models.data.metadata import DatasetError, check_cardinalities, load_metadata
from tests.data.conftest import CARDINALITIES, NUM_NUMERICAL, SPLIT_ROWS

EXPECTED_DTYPES = ("int8", "int8", "int16", "int16", "int32", "int32")


@pytest.mark.parametrize(
    ("rows", "dtype"),
    [(1, "int8"), (126, "int8"), (127, "int16"), (32766, "int16"), (32767, "int32")],
)
def test_categorical_dtype_rule(rows, dtype):
    assert fs.categorical_dtype(rows).name == dtype


def test_categorical_dtype_rejects_tables_beyond_int32():
    with pytest.raises(ValueError, match="2147483647 rows does not fit"):
        fs.categorical_dtype(2**31 - 1)


def test_loads_our_metadata(dataset_factory):
    root, _ = dataset_factory()
    metadata = load_metadata(root)
    assert metadata.source == "ours"
    assert metadata.cardinalities == CARDINALITIES
    assert tuple(d.name for d in metadata.categorical_dtypes) == EXPECTED_DTYPES
    assert metadata.num_numerical_features == NUM_NUMERICAL
    assert dict(metadata.rows) == SPLIT_ROWS
    assert metadata.raw["format_version"] == 1
    assert metadata.num_tables == len(CARDINALITIES)


def test_derives_nvidia_metadata_from_model_size_and_file_sizes(dataset_factory):
    root, _ = dataset_factory(source="nvidia")
    assert not (root / fs.METADATA_FILE).exists()
    metadata = load_metadata(root)
    assert metadata.source == "nvidia"
    assert metadata.cardinalities == CARDINALITIES  # largest id + 1
    assert tuple(d.name for d in metadata.categorical_dtypes) == EXPECTED_DTYPES
    assert metadata.num_numerical_features == NUM_NUMERICAL
    assert dict(metadata.rows) == SPLIT_ROWS
    assert metadata.raw == {f"_c{14 + i}": n - 1 for i, n in enumerate(CARDINALITIES)}


def test_nvidia_columns_are_ordered_numerically_not_alphabetically(dataset_factory):
    root, _ = dataset_factory(source="nvidia")
    # _c9 must come before _c14 although "_c14" < "_c9" as strings.
    sizes = {"_c14": 99, "_c9": 4, "_c20": 199}
    (root / fs.MODEL_SIZE_FILE).write_text(json.dumps(sizes))
    assert load_metadata(root, validate=False).cardinalities == (5, 100, 200)


def test_wrong_file_size_names_file_expected_and_actual_bytes(dataset_factory):
    root, _ = dataset_factory()
    path = root / "test" / "cat_4.bin"  # int32, 10 rows -> 40 bytes
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DatasetError) as error:
        load_metadata(root)
    message = str(error.value)
    assert f"{path}: expected 40 bytes for 10 rows, got 37 bytes" in message
    assert "'test'" in message


def test_every_bad_file_is_listed(dataset_factory):
    root, _ = dataset_factory()
    (root / "train" / "label.bin").write_bytes(b"\x00" * 24)
    (root / "train" / "cat_0.bin").unlink()
    (root / "train" / "numerical.bin").write_bytes(b"")
    with pytest.raises(DatasetError) as error:
        load_metadata(root)
    message = str(error.value)
    assert "label.bin: expected 23 bytes for 23 rows, got 24 bytes" in message
    assert "cat_0.bin: missing (expected 23 bytes)" in message
    assert f"numerical.bin: expected {23 * NUM_NUMERICAL * 2} bytes for 23 rows, got 0" in message


def test_nvidia_numerical_size_must_be_whole_rows(dataset_factory):
    root, _ = dataset_factory(source="nvidia")
    path = root / "train" / "numerical.bin"
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(DatasetError, match="not a whole number of float16 rows for 23 samples"):
        load_metadata(root)


def test_nvidia_splits_must_agree_on_numerical_columns(dataset_factory):
    root, _ = dataset_factory(source="nvidia")
    path = root / "test" / "numerical.bin"
    path.write_bytes(path.read_bytes() + b"\x00\x00" * 10)  # 10 rows x 4 columns
    with pytest.raises(DatasetError, match="disagree on the number of numerical features"):
        load_metadata(root)


def test_nvidia_truncated_categorical_file_is_caught(dataset_factory):
    root, _ = dataset_factory(source="nvidia")
    path = root / "validation" / "cat_2.bin"
    path.write_bytes(path.read_bytes()[:-2])  # int16, 7 rows -> 14 bytes
    with pytest.raises(DatasetError, match=r"cat_2.bin: expected 14 bytes for 7 rows, got 12"):
        load_metadata(root)


def test_missing_directory_and_metadata(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_metadata(tmp_path / "nowhere")
    with pytest.raises(
        DatasetError, match=r"none of feature_spec\.yaml, metadata\.json, model_size\.json"
    ):
        load_metadata(tmp_path)


def _rewrite_metadata(root, **changes):
    """Edits ``metadata.json`` of a format-1 dataset written before ``feature_spec.yaml``."""
    (root / fs.FEATURE_SPEC_FILE).unlink()
    path = root / fs.METADATA_FILE
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"num_categorical_features": 5}, "num_categorical_features is 5 but 6 cardinalities"),
        ({"cardinalities": [5, 0, 127, 300, 32767, 70000]}, "must be a list of ints > 0"),
        (
            {"categorical_dtypes": ["int8", "int8", "int16", "int8", "int32", "int32"]},
            "table 3 has 300 rows but dtype int8 holds ids up to 127",
        ),
        ({"categorical_dtypes": ["int32"] * 5 + ["int64"]}, r"categorical_dtypes\[5\] is 'int64'"),
        ({"rows": {"train": -1}}, "rows must map split names to ints >= 0"),
    ],
)
def test_malformed_metadata_is_rejected_with_the_offending_value(dataset_factory, changes, message):
    root, _ = dataset_factory()
    _rewrite_metadata(root, **changes)
    with pytest.raises(DatasetError, match=message):
        load_metadata(root)


def test_dtype_that_is_wider_than_the_rule_but_holds_the_ids_is_accepted(dataset_factory):
    root, _ = dataset_factory(split_rows={"train": 0})
    _rewrite_metadata(root, categorical_dtypes=["int32"] * 6)
    assert load_metadata(root).categorical_dtypes[0] == np.dtype(np.int32)


def test_metadata_missing_keys_and_invalid_json(dataset_factory):
    root, _ = dataset_factory()
    (root / fs.FEATURE_SPEC_FILE).unlink()
    path = root / fs.METADATA_FILE
    path.write_text(json.dumps({"format_version": 1, "rows": {}}))
    with pytest.raises(DatasetError, match="missing keys"):
        load_metadata(root)
    path.write_text("{\n  'not json'\n}")
    with pytest.raises(DatasetError, match=r"metadata.json:2: not valid JSON"):
        load_metadata(root)


def test_metadata_and_model_size_must_agree(dataset_factory):
    root, _ = dataset_factory()
    sizes = {f"_c{14 + i}": n - 1 for i, n in enumerate(CARDINALITIES)}
    sizes["_c17"] += 1
    (root / fs.MODEL_SIZE_FILE).write_text(json.dumps(sizes))
    with pytest.raises(
        DatasetError, match=r"table 3: metadata\.json 300 rows, model_size\.json 301"
    ):
        load_metadata(root)


def test_unknown_split_names_the_available_ones(dataset_factory):
    root, _ = dataset_factory(split_rows={"train": 4, "test": 2})
    metadata = load_metadata(root)
    with pytest.raises(DatasetError, match=r"'validation' is not in .* \(available: test, train\)"):
        metadata.split_rows("validation")


def test_empty_split_without_directory_is_valid(dataset_factory):
    root, _ = dataset_factory(split_rows={"train": 4})
    _rewrite_metadata(root, rows={"train": 4, "validation": 0})
    assert load_metadata(root).split_rows("validation") == 0


def test_check_cardinalities():
    check_cardinalities([3, 4], (3, 4))
    with pytest.raises(ValueError, match="checkpoint has 26 tables, dataset has 25"):
        check_cardinalities([1] * 26, [1] * 25)
    with pytest.raises(ValueError) as error:
        check_cardinalities([3, 4, 5, 6], [3, 7, 5, 2])
    assert str(error.value) == (
        "cardinalities of 2 tables differ between checkpoint and dataset: "
        "table 1: checkpoint 4 rows, dataset 7 rows; table 3: checkpoint 6 rows, dataset 2 rows"
    )
    with pytest.raises(ValueError, match=r"; and 2 more$"):
        check_cardinalities(range(1, 13), range(2, 14), "model", "data")
