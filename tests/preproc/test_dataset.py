"""The binary dataset decodes to exactly what a plain Python transform of the TSV gives."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from models.data.feature_spec import categorical_dtype
from tests.preproc.helpers import (
    LABELED_SAMPLES,
    preprocess,
    read_split,
    reference_transform,
    rows_as_bytes,
    sample,
)


@pytest.mark.parametrize("transform", ["log3", "log1p_clamp"])
def test_decoded_dataset_matches_reference(tmp_path, transform):
    inputs = [sample(n) for n in LABELED_SAMPLES]
    meta = preprocess(
        inputs,
        tmp_path,
        numerical_transform=transform,
        unit_bytes=64 << 10,
        shuffle_bucket_rows=500,
    )
    labels, numerical, ids, cardinalities = reference_transform(inputs, 2, transform)
    n = len(labels)
    n_test = int(n * 0.1 + 0.5)
    assert meta["rows_read"] == n == meta["rows_written"]
    assert meta["rows"] == {"train": n - n_test, "test": n_test, "validation": 0}
    assert meta["cardinalities"] == cardinalities
    assert meta["categorical_dtypes"] == [categorical_dtype(c).name for c in cardinalities]
    assert meta["numerical_transform"] == transform and meta["shuffled"]

    test = read_split(tmp_path, "test")  # input order kept
    np.testing.assert_array_equal(test["label"], labels[n - n_test :])
    np.testing.assert_array_equal(
        test["numerical"].view(np.uint16), numerical[n - n_test :].view(np.uint16)
    )
    np.testing.assert_array_equal(test["categorical"], ids[n - n_test :])

    train = read_split(tmp_path, "train")  # shuffled: same rows, other order
    expected = rows_as_bytes(labels[: n - n_test], numerical[: n - n_test], ids[: n - n_test])
    assert rows_as_bytes(train["label"], train["numerical"], train["categorical"]) == expected
    assert not np.array_equal(train["categorical"], ids[: n - n_test])


def test_no_shuffle_keeps_input_order_and_files_match_format(tmp_path):
    inputs = [sample("deepctr_criteo_sample.tsv")]
    meta = preprocess(inputs, tmp_path, shuffle=False, frequency_thresholds=(1,) * 26)
    labels, _, ids, cardinalities = reference_transform(inputs, 1)
    train = read_split(tmp_path, "train")
    np.testing.assert_array_equal(train["categorical"], ids[: meta["rows"]["train"]])
    np.testing.assert_array_equal(train["label"], labels[: meta["rows"]["train"]])
    model_size = json.loads((tmp_path / "model_size.json").read_text())
    assert list(model_size) == [f"_c{i}" for i in range(14, 40)]
    assert list(model_size.values()) == [c - 1 for c in cardinalities]
    for t in range(26):
        vocab = np.load(tmp_path / "vocab" / f"cat_{t}.npy")
        assert vocab.dtype == np.uint32 and vocab.size == cardinalities[t] - 1
    for split, rows in meta["rows"].items():
        assert (tmp_path / split / "numerical.bin").stat().st_size == rows * 13 * 2
        assert (tmp_path / split / "label.bin").stat().st_size == rows
    assert not (tmp_path / "_work").exists()


def test_vocab_ids_follow_counts_and_thresholds(tmp_path):
    inputs = [sample("kaggle_train_head.tsv")]
    preprocess(
        inputs,
        tmp_path,
        frequency_thresholds=(1,) + (5,) * 25,
        shuffle=False,
        test_fraction=0.0,
    )
    # table 0 keeps every value, the others only values seen 5 times or more
    _, _, ids_all, cards_all = reference_transform(inputs, 1)
    _, _, ids_5, cards_5 = reference_transform(inputs, 5)
    train = read_split(tmp_path, "train")
    np.testing.assert_array_equal(train["categorical"][:, 0], ids_all[:, 0])
    np.testing.assert_array_equal(train["categorical"][:, 1:], ids_5[:, 1:])
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["cardinalities"] == cards_all[:1] + cards_5[1:]


def test_small_flushes_chunks_and_segments_give_the_same_rows(tmp_path, monkeypatch):
    """A whole .gz file is one unit: it must stream (counts flushed, rows mapped in
    chunks, training rows shuffled in segments) and still give the exact dataset."""
    from preproc import count_pass, transform_pass

    monkeypatch.setattr(count_pass, "FLUSH_ROWS", 100)
    monkeypatch.setattr(transform_pass, "CHUNK_ROWS", 128)
    monkeypatch.setattr(transform_pass, "SEGMENT_ROWS", 300)
    packed = tmp_path / "kaggle.tsv.gz"
    packed.write_bytes(gzip.compress(Path(sample("kaggle_train_head.tsv")).read_bytes()))
    segments = []

    def inspect(step, index):
        buckets = tmp_path / "out" / "_work" / "pass2" / "unit_000000.train.buckets.npy"
        if step == "transform":
            segments.append(np.load(buckets).shape)

    meta = preprocess([str(packed)], tmp_path / "out", shuffle_bucket_rows=700, hook=inspect)
    labels, numerical, ids, cardinalities = reference_transform(
        [sample("kaggle_train_head.tsv")], 2
    )
    assert meta["cardinalities"] == cardinalities
    n_train = meta["rows"]["train"]
    train = read_split(tmp_path / "out", "train")
    expected = rows_as_bytes(labels[:n_train], numerical[:n_train], ids[:n_train])
    assert rows_as_bytes(train["label"], train["numerical"], train["categorical"]) == expected
    np.testing.assert_array_equal(
        read_split(tmp_path / "out", "test")["categorical"], ids[n_train:]
    )
