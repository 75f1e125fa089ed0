"""The dataset contract: feature_spec.yaml round trips, the layouts it must read,
errors naming the file, and one definition of the file names in the source tree."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from models.data import feature_spec as fs
from models.data.feature_spec import DatasetError, FeatureSpec
from models.data.metadata import load_metadata
from models.data.spec_checks import validate_spec
from models.data.spec_types import Chunk, Feature
from models.data.writer import write_dataset
from tests.data.conftest import CARDINALITIES, NUM_NUMERICAL, SPLIT_ROWS, random_split

REPO = Path(__file__).resolve().parents[2]
NVIDIA_SPEC = Path(__file__).parent / "fixtures" / "nvidia_feature_spec.yaml"
NVIDIA_CARDINALITIES = [3, 7, 11, 20, 50, 100] * 4 + [200, 300]


def test_default_spec_round_trips_through_yaml(tmp_path):
    spec = FeatureSpec.default(3, [5, 300, 70000], rows={"train": 4, "test": 2})
    fs.write_feature_spec(tmp_path, spec)
    read = fs.read_feature_spec(tmp_path)
    assert read == spec
    assert read.cardinalities == (5, 300, 70000)
    assert [d.name for d in read.categorical_dtypes] == ["int8", "int16", "int32"]
    assert read.hotness == (1, 1, 1)
    assert read.rows == {"train": 4, "test": 2}
    raw = yaml.safe_load((tmp_path / fs.FEATURE_SPEC_FILE).read_text())
    assert list(raw) == ["metadata", "feature_spec", "channel_spec", "source_spec"]
    assert raw["feature_spec"]["cat_1"] == {"dtype": "int16", "cardinality": 300, "hotness": 1}
    assert raw["channel_spec"]["numerical"] == ["num_0", "num_1", "num_2"]
    assert raw["source_spec"]["test"][1] == {
        "type": "split_binary",
        "features": ["num_0", "num_1", "num_2"],
        "files": ["test/numerical.bin"],
    }


def test_spec_keeps_hotness_and_sizes_files_by_it(tmp_path):
    raw = FeatureSpec.default(0, [10, 20], rows={"train": 5}).to_dict()
    raw["feature_spec"]["cat_1"]["hotness"] = 3
    spec = FeatureSpec.from_dict(raw, "spec")
    assert spec.hotness == (1, 3) and spec.num_numerical == 0
    sizes = spec.expected_sizes(tmp_path, "train", 5)
    assert sizes == {
        tmp_path / "train" / "label.bin": 5,
        tmp_path / "train" / "cat_0.bin": 5,
        tmp_path / "train" / "cat_1.bin": 15,
    }
    assert FeatureSpec.from_dict(yaml.safe_load(spec.dump()), "again") == spec


def test_named_multi_hot_spec_stores_hotness_ids_per_row_padded_outside_every_table(tmp_path):
    names = fs.FeatureNames("clicked", ("price",), ("user", "tags"))
    spec = FeatureSpec.default(1, [5, 300], {"train": 4}, hotness=[1, 3], names=names)
    assert list(spec.features) == ["clicked", "price", "user", "tags"]
    assert spec.channels == {
        "label": ("clicked",),
        "numerical": ("price",),
        "categorical": ("user", "tags"),
    }
    assert spec.hotness == (1, 3) and spec.categorical_dtypes[1] == np.dtype("<i2")
    assert spec.chunk_of("train")["tags"].file == "train/cat_1.bin"
    assert spec.expected_sizes(tmp_path, "train", 4)[tmp_path / "train" / "cat_1.bin"] == 24
    # The padding id is below every table's first id and fits every categorical dtype.
    assert fs.PAD_ID < 0
    assert all(np.iinfo(d).min <= fs.PAD_ID for d in fs.CATEGORICAL_DTYPES)
    assert FeatureSpec.from_dict(yaml.safe_load(spec.dump()), "again") == spec


@pytest.mark.parametrize("source", ["ours", "ours_v1", "nvidia"])
def test_every_layout_of_the_writer_loads_to_the_same_metadata(dataset_factory, source):
    root, _ = dataset_factory(source=source)
    assert (root / fs.FEATURE_SPEC_FILE).exists() == (source == "ours")
    metadata = load_metadata(root)
    assert metadata.cardinalities == CARDINALITIES
    assert metadata.num_numerical_features == NUM_NUMERICAL
    assert dict(metadata.rows) == SPLIT_ROWS
    assert metadata.spec == FeatureSpec.default(
        NUM_NUMERICAL, CARDINALITIES, SPLIT_ROWS, metadata.categorical_dtypes
    )


def test_preprocess_then_load_gives_the_metadata_written(tmp_path, capsys):
    from preproc import cli
    from tools.generate_criteo import generate

    inputs = generate(str(tmp_path / "raw"), 300, 2, seed=3)
    root = tmp_path / "out"
    argv = ["--input_files", *inputs, "--output_dir", str(root), "--num_workers", "1"]
    assert cli.main([*argv, "--frequency_threshold", "2"]) == 0
    capsys.readouterr()
    written = json.loads((root / fs.METADATA_FILE).read_text())
    spec = fs.read_feature_spec(root)
    assert list(spec.cardinalities) == written["cardinalities"]
    assert [d.name for d in spec.categorical_dtypes] == written["categorical_dtypes"]
    assert spec.rows == written["rows"] and spec.num_numerical == 13
    metadata = load_metadata(root)
    assert metadata.source == "ours" and metadata.spec == spec
    # The spec alone describes the dataset: the same metadata without metadata.json.
    (root / fs.METADATA_FILE).unlink()
    alone = load_metadata(root)
    assert alone.source == "feature_spec"
    assert (alone.cardinalities, alone.categorical_dtypes, dict(alone.rows)) == (
        metadata.cardinalities,
        metadata.categorical_dtypes,
        dict(metadata.rows),
    )


def _write_nvidia_dataset(root: Path, rows: dict[str, int]) -> dict[str, tuple]:
    """NVIDIA's file layout written with plain numpy, independent of the contract."""
    root.mkdir(parents=True)
    shutil.copy(NVIDIA_SPEC, root / "feature_spec.yaml")
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in rows.items():
        (root / split).mkdir()
        labels = rng.integers(0, 2, n).astype(bool)
        numerical = (rng.integers(-64, 64, (n, 13)) / 8).astype(np.float16)
        ids = np.stack([rng.integers(0, c, n) for c in NVIDIA_CARDINALITIES], axis=1)
        labels.tofile(root / split / "label.bin")
        numerical.tofile(root / split / "numerical.bin")
        for t, c in enumerate(NVIDIA_CARDINALITIES):
            ids[:, t].astype(np.int8 if c < 127 else np.int16).tofile(root / split / f"cat_{t}.bin")
        arrays[split] = (labels, numerical, ids)
    return arrays


def test_nvidia_feature_spec_loads_as_is_and_reads_its_rows(tmp_path):
    from models.data.binary import BinaryDataset

    root = tmp_path / "nvidia"
    arrays = _write_nvidia_dataset(root, {"train": 50, "test": 20})
    metadata = load_metadata(root)
    assert metadata.source == "feature_spec"
    assert list(metadata.cardinalities) == NVIDIA_CARDINALITIES
    assert dict(metadata.rows) == {"test": 20, "train": 50}
    labels, numerical, ids = arrays["train"]
    data = BinaryDataset(root, "train", 16, metadata=metadata)
    batches = [data.read_batch(i) for i in range(len(data))]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), numerical)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), ids)
    np.testing.assert_array_equal(np.concatenate([b[2][:, 0] for b in batches]), labels)


def test_nvidia_feature_spec_dataset_trains_and_evaluates(tmp_path):
    import dlrm_main

    root = tmp_path / "nvidia"
    _write_nvidia_dataset(root, {"train": 256, "test": 128})
    common = [
        "dlrm_main.py",
        f"--dataset_path={root}",
        "--batch_size=64",
        "--valid_batch_size=64",
        "--embedding_dim=4",
        "--bottom_mlp_dims=8,4",
        "--top_mlp_dims=8,1",
        f"--log_path={tmp_path / 'log.json'}",
    ]
    trained = dlrm_main.main([*common, f"--save_checkpoint_path={tmp_path / 'ckpt'}"])
    assert trained["steps"] == 4 and 0.0 <= trained["auc"] <= 1.0
    checkpoint = sorted((tmp_path / "ckpt").glob("ckpt-*"))[-1]
    evaluated = dlrm_main.main([*common, "--mode=eval", f"--restore_checkpoint_path={checkpoint}"])
    assert evaluated["auc"] == pytest.approx(trained["auc"], abs=1e-6)


def _spec_dict() -> dict:
    return FeatureSpec.default(2, [5, 300], rows={"train": 3}).to_dict()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["feature_spec"]["cat_0"].update(dtype="int99"), r"'cat_0': unknown dtype"),
        (lambda d: d["feature_spec"]["cat_1"].update(dtype="int8"), r"300 rows but dtype int8"),
        (lambda d: d["feature_spec"]["cat_0"].pop("cardinality"), r"'cat_0' needs a cardinality"),
        (
            lambda d: d["feature_spec"]["num_0"].update(dtype="float32"),
            r"'num_0' must be float16, got float32",
        ),
        (lambda d: d["feature_spec"]["cat_0"].update(hotness=0), r"hotness must be an int >= 1"),
        (lambda d: d["channel_spec"].pop("label"), r"channel_spec must have exactly"),
        (lambda d: d["channel_spec"]["categorical"].append("cat_9"), r"undefined features"),
        (lambda d: d["source_spec"]["train"].pop(), r"missing \['cat_1'\]"),
        (lambda d: d["source_spec"]["train"][0].update(type="csv"), r"split_binary"),
        (lambda d: d["source_spec"]["train"][0]["files"].append("x"), r"exactly one file"),
        (lambda d: d["source_spec"]["train"][1]["features"].reverse(), r"in channel order"),
        (lambda d: d["metadata"].update(rows={"test": 3}), r"metadata.rows"),
    ],
)
def test_a_damaged_spec_is_rejected_naming_the_file(tmp_path, edit, message):
    raw = _spec_dict()
    edit(raw)
    (tmp_path / fs.FEATURE_SPEC_FILE).write_text(yaml.safe_dump(raw))
    with pytest.raises(DatasetError, match=message) as error:
        fs.read_feature_spec(tmp_path)
    assert str(error.value).startswith(str(tmp_path / fs.FEATURE_SPEC_FILE))


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    (tmp_path / fs.FEATURE_SPEC_FILE).write_text("feature_spec:\n  a: [1,\n")
    with pytest.raises(DatasetError, match=r"feature_spec\.yaml:\d+: not valid YAML"):
        fs.read_feature_spec(tmp_path)


def test_files_that_disagree_with_the_spec_are_named(tmp_path):
    root = tmp_path / "nvidia"
    _write_nvidia_dataset(root, {"train": 50, "test": 20})
    (root / "train" / "cat_25.bin").write_bytes(bytes(99))  # int16: 100 bytes expected
    (root / "test" / "numerical.bin").unlink()
    with pytest.raises(DatasetError, match=r"test/numerical\.bin: missing"):
        load_metadata(root)
    metadata = load_metadata(root, validate=False)
    with pytest.raises(DatasetError, match=r"train/cat_25\.bin: expected 100 bytes .* got 99"):
        metadata.validate_split("train")
    (root / "train" / "label.bin").unlink()
    with pytest.raises(DatasetError, match=r"feature_spec\.yaml: split 'train': .*label\.bin"):
        load_metadata(root)


def test_spec_and_metadata_json_must_agree(dataset_factory):
    root, _ = dataset_factory()
    raw = yaml.safe_load((root / fs.FEATURE_SPEC_FILE).read_text())
    raw["feature_spec"]["cat_0"]["cardinality"] = 4
    (root / fs.FEATURE_SPEC_FILE).write_text(yaml.safe_dump(raw))
    with pytest.raises(
        DatasetError, match=r"feature_spec\.yaml: cardinalities .* differ from .*metadata\.json"
    ):
        load_metadata(root)


def test_a_hand_edited_multi_hot_spec_is_read_with_its_hotness(tmp_path):
    from models.data.binary import BinaryDataset

    root = tmp_path / "ds"
    split = random_split(np.random.default_rng(0), 4)
    write_dataset(root, {"train": split}, CARDINALITIES)
    raw = yaml.safe_load((root / fs.FEATURE_SPEC_FILE).read_text())
    raw["feature_spec"]["cat_2"]["hotness"] = 2
    (root / fs.FEATURE_SPEC_FILE).write_text(yaml.safe_dump(raw))
    ids = np.array([[1, 2], [3, -1], [-1, -1], [4, 4]], "<i2")  # 2 int16 ids per row
    (root / "train" / "cat_2.bin").write_bytes(ids.tobytes())
    metadata = load_metadata(root)
    assert metadata.spec.hotness == (1, 1, 2, 1, 1, 1)
    _, categorical, _ = BinaryDataset(
        root, "train", 4, metadata=metadata, table_ids=[0, 2]
    ).read_batch(0)
    np.testing.assert_array_equal(categorical[:, 0], split.categorical[:, 0])
    np.testing.assert_array_equal(categorical[:, 1:], ids)


def test_zero_numerical_features_read_no_numerical_file(tmp_path):
    from models.data.binary import BinaryDataset
    from models.data.writer import SplitArrays

    rng = np.random.default_rng(1)
    ids = np.stack([rng.integers(0, n, 6) for n in CARDINALITIES], axis=1)
    arrays = SplitArrays(rng.integers(0, 2, 6), np.zeros((6, 0)), ids)
    write_dataset(tmp_path, {"train": arrays}, CARDINALITIES)
    assert not (tmp_path / "train" / "numerical.bin").exists()
    numerical, categorical, labels = BinaryDataset(tmp_path, "train", 6).read_batch(0)
    assert numerical.shape == (6, 0)
    np.testing.assert_array_equal(categorical, ids)
    np.testing.assert_array_equal(labels[:, 0], arrays.labels)


# Dataset file names: outside the contract they may appear in prose, never as a literal.
_FILE_NAME_LITERAL = re.compile(
    r"""["'][^"'\s]*(label\.bin|numerical\.bin|feature_spec\.yaml|model_size\.json"""
    r"""|metadata\.json|cat_\{[^}]*\}\.(bin|npy))["']"""
)
# A checkpoint's metadata.json is another file of the same name.
_ALLOWED = {("models/training/checkpoint.py", "metadata.json")}


def test_only_the_contract_spells_the_dataset_file_names():
    offenders = []
    sources = [p for d in ("models", "preproc", "tools") for p in (REPO / d).rglob("*.py")]
    sources += list(REPO.glob("*.py"))
    for path in sources:
        rel = path.relative_to(REPO).as_posix()
        if rel == "models/data/feature_spec.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in _FILE_NAME_LITERAL.finditer(line):
                if (rel, match.group(1)) not in _ALLOWED:
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "use models/data/feature_spec.py:\n" + "\n".join(offenders)


def test_the_pattern_catches_a_second_writer():
    assert _FILE_NAME_LITERAL.search("open(os.path.join(d, 'label.bin'), 'wb')")
    assert _FILE_NAME_LITERAL.search('path = f"{split}/cat_{t}.bin"')
    assert _FILE_NAME_LITERAL.search('Path(root) / "feature_spec.yaml"')
    assert not _FILE_NAME_LITERAL.search("writes ``label.bin`` and ``numerical.bin``")


def test_the_checks_sit_below_the_contract_without_importing_it():
    # spec_checks takes plain values (spec_types); an import of feature_spec there would
    # bring back the cycle that needed function-local imports.
    code = (
        "import sys, models.data.spec_checks; sys.exit('models.data.feature_spec' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
    with pytest.raises(DatasetError, match=r"spec\.yaml: label 'y' must be bool, got int8"):
        validate_spec(
            {"y": Feature("y", np.dtype("i1"))},
            {"label": ("y",), "numerical": (), "categorical": ()},
            {"train": (Chunk(("y",), "train/y"),)},
            {},
            "spec.yaml",
        )
