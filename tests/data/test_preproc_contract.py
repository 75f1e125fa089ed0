"""The reader accepts what ``python -m preproc`` writes (the format contract)."""

from pathlib import Path

import numpy as np

from models.data.binary import BinaryDataset
from models.data.metadata import load_metadata
from preproc import cli
from tests.samples import SAMPLES_DIR

SAMPLE = SAMPLES_DIR / "deepctr_criteo_sample.tsv"


def _decode(directory: Path, rows: int, dtypes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain numpy decoding of a split, independent of the reader."""
    labels = np.fromfile(directory / "label.bin", np.bool_).astype(np.float32)
    numerical = np.fromfile(directory / "numerical.bin", np.float16).reshape(rows, 13)
    ids = [np.fromfile(directory / f"cat_{t}.bin", dtype) for t, dtype in enumerate(dtypes)]
    return numerical.astype(np.float32), np.stack(ids, axis=1), labels


def test_reads_a_preprocessed_criteo_sample(tmp_path, capsys):
    root = tmp_path / "dataset"
    argv = ["--input_files", str(SAMPLE), "--output_dir", str(root)]
    assert cli.main([*argv, "--frequency_threshold", "2", "--test_fraction", "0.25"]) == 0
    capsys.readouterr()
    metadata = load_metadata(root)
    assert metadata.source == "ours"
    assert metadata.num_tables == 26 and metadata.num_numerical_features == 13
    assert metadata.rows["train"] + metadata.rows["test"] == 200
    for split in ("train", "test"):
        numerical, ids, labels = _decode(
            root / split, metadata.rows[split], metadata.categorical_dtypes
        )
        ranks = [
            list(BinaryDataset(root, split, 32, rank=rank, world_size=2).as_dataset())
            for rank in range(2)
        ]
        batches = list(zip(*ranks, strict=True))  # (rank 0 element, rank 1 element) per batch
        got_numerical = [f["numerical"] for batch in batches for f, _ in batch]
        got_labels = [y[:, 0] for batch in batches for _, y in batch]
        np.testing.assert_array_equal(np.concatenate(got_numerical), numerical)
        np.testing.assert_array_equal(np.concatenate(got_labels), labels)
        got_ids = [batch[rank][0]["categorical"] for batch in batches for rank in (0, 1)]
        np.testing.assert_array_equal(np.concatenate(got_ids[0::2]), ids)
        np.testing.assert_array_equal(np.concatenate(got_ids[1::2]), ids)
