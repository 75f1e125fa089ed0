"""The raw-input preprocessing gives, for every raw row of a test split, exactly the
numericals and ids preproc wrote for it (before any model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from models.serving.raw_input import (
    RawInputError,
    RawInputSpec,
    RawPreprocessor,
    input_key,
    raw_input_missing,
)
from tests.serving import cases


@pytest.fixture(scope="module")
def criteo(tmp_path_factory) -> cases.Case:
    return cases.criteo_case(tmp_path_factory.mktemp("criteo"))


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> cases.Case:
    return cases.schema_case(tmp_path_factory.mktemp("clicks"))


def _columns(spec: RawInputSpec, rows: list[list[bytes]]) -> dict[str, tf.Tensor]:
    return {
        c.input: tf.constant([r[i] for r in rows], tf.string) for i, c in enumerate(spec.columns)
    }


def _preprocess(case: cases.Case, rows=None):
    spec = RawInputSpec.from_dataset(case.root)
    rows = case.test_rows() if rows is None else rows
    numerical, categorical, reject = RawPreprocessor(spec)(_columns(spec, rows))
    return spec, numerical.numpy(), categorical.numpy(), reject.numpy()


@pytest.mark.parametrize("name", ["criteo", "clicks"])
def test_every_test_row_maps_to_the_stored_ids_and_numericals(name, request):
    case = request.getfixturevalue(name)
    _, numerical, categorical, reject = _preprocess(case)
    want_numerical, want_categorical = case.test_split()
    assert (reject == b"").all()
    np.testing.assert_array_equal(numerical, want_numerical)
    np.testing.assert_array_equal(categorical, want_categorical)
    # The cases hold what they should: missing, rare and (schema) padded ids.
    assert (want_categorical == 0).any() and (want_categorical > 0).any()
    if name == "clicks":
        assert (want_categorical == -1).any()


def test_the_schema_cases_crafted_rows_are_in_the_test_split(clicks):
    rows = clicks.test_rows()
    crafted = [[f.encode("utf-8") for f in r[1:]] for r in cases.CRAFTED]
    assert rows[-len(crafted) :] == crafted


def test_unseen_values_get_id_zero_and_bad_fields_their_reason(criteo, clicks):
    _, _, categorical, reject = _preprocess(
        criteo,
        [
            [b""] * 13 + [b"ffffffff"] * 26,  # a value no row had
            [b"1"] * 12 + [b"1.5"] + [b"0"] * 26,
            [b"1"] * 13 + [b"0"] * 25 + [b"xyz"],
            [b"x"] * 13 + [b"xyz"] * 26,  # the first bad field decides, as preproc
        ],
    )
    assert categorical[0].tolist() == [0] * 26
    assert reject.tolist() == [b"", b"bad_integer", b"bad_categorical", b"bad_integer"]
    row = [b"", b"", b"never seen", b"no item", b"", b"nope|t1"]
    _, _, categorical, reject = _preprocess(clicks, [row, [b"a", *row[1:]]])
    assert reject.tolist() == [b"", b"bad_numerical"]
    user, item, category, tags = (
        categorical[0, 0],
        categorical[0, 1],
        categorical[0, 2],
        categorical[0, 3:],
    )
    assert user == 0 and category == 0 and item >= 0  # item: a hash bucket, maybe known
    assert tags[0] == 0 and tags[1] > 0 and tags[2] == -1  # unseen, t1, padding


def test_the_spec_describes_the_signature(clicks, criteo):
    described = RawInputSpec.from_dataset(clicks.root).describe()
    assert described["format"] == "csv" and described["schema"]["header"] is True
    names = [c["name"] for c in described["columns"]]
    assert names == ["price", "dwell", "user", "item", "category", "tags"]
    tags = described["columns"][-1]
    assert tags == {"name": "tags", "input": "tags", "role": "multi_hot", "separator": "|",
                    "hotness": 3}  # fmt: skip
    assert described["columns"][3]["hash_buckets"] == 64
    criteo_described = RawInputSpec.from_dataset(criteo.root).describe()
    assert [c["input"] for c in criteo_described["columns"]][:2] == ["I1", "I2"]
    assert criteo_described["labeled"] is True and len(criteo_described["columns"]) == 39


def test_input_keys_are_names_tensorflow_accepts():
    assert [input_key(n) for n in ["user", "ad id", "1st", "_x", "é"]] == [
        "user",
        "ad_id",
        "c_1st",
        "c__x",
        "c__",
    ]


def test_a_dataset_without_vocabularies_is_refused_naming_the_file(criteo, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("metadata.json", "feature_spec.yaml"):
        (copy / name).write_bytes((criteo.root / name).read_bytes())
    assert (
        raw_input_missing(copy)
        == f"{copy}/vocab/cat_0.npy is missing (python -m preproc writes vocab/)"
    )
    with pytest.raises(RawInputError, match=r"vocab/cat_0.npy is missing"):
        RawInputSpec.from_dataset(copy)
    (copy / "metadata.json").unlink()
    assert "metadata.json is missing" in raw_input_missing(copy)
    assert raw_input_missing(criteo.root) is None
    assert json.loads((criteo.root / "metadata.json").read_text())["num_categorical_features"] == 26
