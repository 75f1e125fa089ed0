"""Whether an export gets the raw-input signature: unset, explicit, off (dlrm_main's checks)."""

from __future__ import annotations

import logging

import pytest

from models.config import Config, ConfigError, DataConfig, OutputConfig
from models.run.checks import raw_input_root
from tests.serving import cases


def _config(dataset: str, raw: bool | None, dataset_type: str = "raw") -> Config:
    return Config(
        data=DataConfig(dataset_type=dataset_type, dataset_path=dataset),
        output=OutputConfig(export_saved_model_path="/tmp/m", export_raw_input=raw),
    )


@pytest.fixture(scope="module")
def criteo(tmp_path_factory) -> cases.Case:
    return cases.criteo_case(tmp_path_factory.mktemp("criteo"))


def test_a_dataset_with_vocabularies_gets_it_unless_turned_off(criteo):
    assert raw_input_root(_config(str(criteo.root), None)) == str(criteo.root)
    assert raw_input_root(_config(str(criteo.root), True)) == str(criteo.root)
    assert raw_input_root(_config(str(criteo.root), False)) is None
    assert raw_input_root(_config(str(criteo.root), None, "synthetic")) is None
    no_export = Config(data=DataConfig(dataset_path=str(criteo.root)))
    assert raw_input_root(no_export) is None


def test_without_vocabularies_a_warning_or_an_error_when_asked_for(tmp_path, caplog):
    (tmp_path / "metadata.json").write_text('{"num_categorical_features": 2}')
    with caplog.at_level(logging.WARNING):
        assert raw_input_root(_config(str(tmp_path), None)) is None
    assert "id-input signature only" in caplog.text and "vocab/cat_0.npy is missing" in caplog.text
    with pytest.raises(ConfigError, match=r"--export_raw_input: .*vocab/cat_0.npy is missing"):
        raw_input_root(_config(str(tmp_path), True))
