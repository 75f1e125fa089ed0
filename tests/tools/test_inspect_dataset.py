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


def test_multi_hot_rows_decode_as_lists_and_padding_is_not_an_error(tmp_path, capsys):
    from preproc.cli import main as preproc_main

    (tmp_path / "s.yaml").write_text(
        "format: csv\nheader: true\ncolumns:\n  - {name: y, role: label}\n"
        "  - {name: u, role: categorical}\n"
        "  - {name: tags, role: multi_hot, separator: '|', hotness: 3}\n"
    )
    (tmp_path / "d.csv").write_text("y,u,tags\n1,a,x|y\n0,b,\n1,a,y\n")
    args = ["--schema", str(tmp_path / "s.yaml"), "--input_files", str(tmp_path / "d.csv")]
    args += ["--output_dir", str(tmp_path / "ds"), "--no_shuffle", "--test_fraction", "0"]
    assert preproc_main([*args, "--num_workers", "1"]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "ds"), "--rows", "3"]) == 0
    out = capsys.readouterr().out
    # y occurs twice (id 1), x once (id 2); the empty list is only padding.
    assert "[1=" in out and "," in out and "[]" in out
    lines = [line for line in out.splitlines() if "categorical (id" in line]
    assert lines[1].endswith(" []]")  # row 1: an empty list
    assert lines[2].split("=[", 1)[1].count("=") == 2  # row 2: one user id, one tag id
    path = tmp_path / "ds" / "train" / "cat_0.bin"
    ids = np.fromfile(path, np.int8)
    ids[1] = -1  # padding is not an id of a single-valued table
    ids.tofile(path)
    assert main([str(tmp_path / "ds"), "--rows", "3"]) == 1
    assert "cat_0.bin: row 1 holds id -1" in capsys.readouterr().out
