import numpy as np

from models.data.binary import BinaryDataset
from models.data.metadata import load_metadata
from models.data.synthetic import SyntheticDataset
from models.data.writer import SplitArrays, write_dataset, write_split
from tests.data.conftest import CARDINALITIES, random_split
from tools.bench import input as bench_input


def test_appended_chunks_equal_one_write(tmp_path):
    rng = np.random.default_rng(0)
    whole = random_split(rng, 9)
    write_dataset(tmp_path / "once", {"train": whole}, CARDINALITIES)
    write_dataset(
        tmp_path / "chunks", {"train": SplitArrays(*(a[:4] for a in whole))}, CARDINALITIES
    )
    dtypes = load_metadata(tmp_path / "chunks", validate=False).categorical_dtypes
    write_split(tmp_path / "chunks", "train", SplitArrays(*(a[4:] for a in whole)), dtypes, True)
    for once in sorted((tmp_path / "once" / "train").iterdir()):
        assert (tmp_path / "chunks" / "train" / once.name).read_bytes() == once.read_bytes()


def test_bench_dataset_holds_the_synthetic_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_input, "_WRITE_CHUNK_ROWS", 1000)
    cardinalities = (3, 500, 40_000)
    bench_input.write_bench_dataset(tmp_path, 2500, cardinalities, seed=4)
    metadata = load_metadata(tmp_path)
    assert dict(metadata.rows) == {"train": 2500}
    generator = SyntheticDataset(1000, 3, cardinalities, seed=4)
    numerical, categorical, labels = BinaryDataset(tmp_path, "train", 1000).read_batch(2)
    want = generator.global_batch(2)
    np.testing.assert_array_equal(numerical, want[0][:500])
    np.testing.assert_array_equal(categorical, want[1][:500])
    np.testing.assert_array_equal(labels, want[2][:500])


def test_bench_prints_every_pipeline(tmp_path, capsys):
    argv = ["--rows", "9000", "--batch_sizes", "2048", "--world_size", "2"]
    assert bench_input.main([*argv, "--work_dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.split()[-6:-5] == ["2048"]]
    assert [" ".join(row[:-6]) for row in rows] == [
        "binary, TF ops (in order)",
        "binary, preadv (shuffled)",
        "binary, read_batch alone",
        "synthetic powerlaw, tf.data",
        "synthetic constant, tf.data",
    ]
    assert [int(row[-5]) for row in rows] == [5, 5, 5, 4, 4]  # ceil and floor of 9000/2048
    assert all(float(row[-2].replace(",", "")) > 0 for row in rows)
    assert list(tmp_path.iterdir()) == []  # the temporary dataset is removed
