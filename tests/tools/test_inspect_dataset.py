import json
import os
import shutil

import numpy as np

from tests.preproc.helpers import preprocess, sample, sample_lines
from tools.inspect_dataset import main


def test_reports_valid_dataset_and_decodes_rows(tmp_path, capsys):
    preprocess([sample("deepctr_criteo_sample.tsv")], tmp_path / "ds", shuffle=False)
    assert main([str(tmp_path / "ds"), "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "(metadata.json)" in out and "all file sizes match" in out
    assert "train: 180 rows" in out and "test: 20 rows" in out
    first = sample_lines("deepctr_criteo_sample.tsv")[0].decode().split("\t")
    assert f"label={first[0]}" in out
    assert f"={first[14]}" in out  # the raw hash of a categorical value, from the vocabulary


def test_detects_a_truncated_file(tmp_path, capsys):
    preprocess([sample("deepctr_criteo_sample.tsv")], tmp_path / "ds")
    path = tmp_path / "ds" / "train" / "cat_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    os.remove(tmp_path / "ds" / "test" / "label.bin")
    assert main([str(tmp_path / "ds")]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "cat_3.bin" in out and "label.bin: missing" in out


def test_an_id_outside_its_table_is_reported_not_a_crash(tmp_path, capsys):
    preprocess([sample("deepctr_criteo_sample.tsv")], tmp_path / "ds", shuffle=False)
    meta = json.loads((tmp_path / "ds" / "metadata.json").read_text())
    path = tmp_path / "ds" / "train" / "cat_3.bin"
    ids = np.fromfile(path, meta["categorical_dtypes"][3])
    ids[1] = meta["cardinalities"][3]  # one past the last row
    ids.tofile(path)
    assert main([str(tmp_path / "ds"), "--rows", "2"]) == 1
    out = capsys.readouterr().out
    assert f"{ids[1]}=OUT_OF_RANGE" in out
    assert f"cat_3.bin: row 1 holds id {ids[1]}, outside table 3's [0, {ids[1]})" in out


def test_reads_nvidia_layout_from_model_size_only(tmp_path, capsys):
    preprocess([sample("deepctr_criteo_sample.tsv")], tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "metadata.json").read_text())
    os.remove(tmp_path / "ds" / "metadata.json")
    os.remove(tmp_path / "ds" / "feature_spec.yaml")
    shutil.rmtree(tmp_path / "ds" / "vocab")
    assert main([str(tmp_path / "ds"), "--rows", "1"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA layout" in out
    assert json.dumps(meta["categorical_dtypes"]) in out
    assert f"train: {meta['rows']['train']} rows" in out


def test_missing_metadata_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "none of feature_spec.yaml, metadata.json, model_size.json" in capsys.readouterr().err
