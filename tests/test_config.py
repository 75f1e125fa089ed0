"""Flags -> frozen configuration, and the cross-flag validation."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from absl import flags

from models import flags as dlrm_flags
from models.config import (
    INFERENCE_DEFAULT_STEPS,
    Config,
    ConfigError,
    DataConfig,
    ProfilerConfig,
    config_path_for,
    write_config,
)
from models.config_checks import validate
from models.flags import config_from_flags


def _parse(*args: str) -> flags.FlagValues:
    return dlrm_flags.parse(["dlrm_main.py", *args])


def test_defaults_follow_the_reference_table() -> None:
    config = config_from_flags(_parse("--dataset_path=/data"))
    assert config.run.mode == "train"
    assert config.data.batch_size == 65536 == config.data.valid_batch_size
    assert config.run.max_steps == -1
    assert config.run.print_freq == 1000
    assert config.optimizer.learning_rate == 24.0
    assert config.optimizer.warmup_steps == 8000
    assert config.optimizer.decay_start_step == 48000
    assert config.optimizer.decay_steps == 24000
    assert config.model.bottom_mlp_dims == (512, 256, 128)
    assert config.model.top_mlp_dims == (1024, 1024, 512, 256, 1)
    assert config.profiler.start_step == 1 and config.profiler.rank == 0
    assert config.output.log_path == "dlrm_tf_log.json"
    assert config.model.model_type == "dlrm"
    # DCNv2 (only used with --model_type=dcnv2): MLPerf's sizes.
    assert (config.model.num_cross_layers, config.model.cross_layer_projection_dim) == (3, 512)


def test_unknown_model_type_is_refused_by_the_flag_parser() -> None:
    with pytest.raises(flags.IllegalFlagValueError, match=r"one of <dlrm\|dcnv2>"):
        _parse("--dataset_path=/data", "--model_type=dcn")
    # A Config built in code is validated too.
    config = config_from_flags(_parse("--dataset_path=/data"))
    bad = dataclasses.replace(config, model=dataclasses.replace(config.model, model_type="dcn"))
    assert validate(bad) == ["--model_type must be one of ['dlrm', 'dcnv2'], got 'dcn'"]


def test_model_type_and_cross_layers() -> None:
    model = config_from_flags(
        _parse(
            "--dataset_path=/data",
            "--model_type=dcnv2",
            "--num_cross_layers=2",
            "--cross_layer_projection_dim=0",
        )
    ).model
    assert (model.model_type, model.num_cross_layers, model.cross_layer_projection_dim) == (
        "dcnv2",
        2,
        0,
    )


def test_unset_flags_give_the_dataclass_defaults() -> None:
    # The flags take their defaults from the dataclasses; only the dataset path
    # (required) and the profiler directory (derived from --log_path) differ.
    config = config_from_flags(_parse("--dataset_path=/data"))
    assert config == Config(
        data=DataConfig(dataset_path="/data"),
        profiler=ProfilerConfig(log_dir=os.path.join(os.path.abspath("."), "profile")),
        explicit_flags=("dataset_path",),
    )


def test_config_is_frozen() -> None:
    config = config_from_flags(_parse("--dataset_path=/data"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data.batch_size = 1  # type: ignore[misc]


def test_aliases_set_the_canonical_flags() -> None:
    config = config_from_flags(_parse("--dataset_path=/d", "--amp", "--xla"))
    assert config.device.use_amp and config.device.enable_xla


def test_inference_defaults_to_1000_steps() -> None:
    config = config_from_flags(_parse("--dataset_path=/d", "--mode=inference"))
    assert config.run.max_steps == INFERENCE_DEFAULT_STEPS
    config = config_from_flags(_parse("--dataset_path=/d", "--mode=inference", "--max_steps=7"))
    assert config.run.max_steps == 7


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--batch_size=1024"], "--valid_batch_size (65536) must equal --batch_size (1024)"),
        (["--mode=eval"], "--mode=eval needs --restore_checkpoint_path"),
        (
            [
                "--dataset_type=synthetic",
                "--synthetic_dataset_cardinalities=5,6",
                "--synthetic_dataset_hotness=1,2,3",
            ],
            "--synthetic_dataset_hotness gives 3 values for 2 tables",
        ),
        (
            [
                "--dataset_type=synthetic",
                "--synthetic_dataset_hotness=" + ",".join(["1"] * 25 + ["0"]),
            ],
            "--synthetic_dataset_hotness must be >= 1, got (index, value) [(25, 0)]",
        ),
        (["--synthetic_dataset_hotness=2"], "applies to --dataset_type=synthetic"),
        (["--num_numerical_features=-1"], "--num_numerical_features must be >= 0, got -1"),
        (["--bottom_mlp_dims=512,256,64"], "must end with --embedding_dim (128)"),
        (["--top_mlp_dims=16,2"], "--top_mlp_dims must end with 1"),
        (["--bottom_mlp_dims=a,b"], "--bottom_mlp_dims must be a comma-separated list"),
        (["--use_mlus", "--use_gpus"], "mutually exclusive"),
        (["--use_gpus", "--device=cpu"], "--use_gpus contradicts --device=cpu"),
        (["--checkpoint_every_n_steps=10"], "needs --save_checkpoint_path"),
        (["--decay_start_step=10"], "--decay_start_step (10) must not be before"),
        (["--max_steps=0"], "--max_steps must be -1"),
        (
            ["--mode=inference", "--max_steps=5", "--benchmark_warmup_steps=5"],
            "nothing is measured",
        ),
        (["--evals_per_epoch=0"], "--skip_eval"),
        (["--epochs=0"], "--epochs must be positive, got 0"),
        (["--model_type=dcnv2", "--num_cross_layers=0"], "--num_cross_layers must be positive"),
        (["--cross_layer_projection_dim=-1"], "--cross_layer_projection_dim must be >= 0, got -1"),
        (["--export_raw_input"], "--export_raw_input needs --export_saved_model_path"),
        (
            ["--export_raw_input", "--export_saved_model_path=/m", "--dataset_type=synthetic"],
            "--export_raw_input needs a dataset written by python -m preproc",
        ),
        (["--eval_scores_path=/s.npy"], "--eval_scores_path needs --mode=eval, got --mode=train"),
    ],
)
def test_invalid_combinations_name_flags_and_values(args: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_flags(_parse("--dataset_path=/d", *args))
    assert expected in str(error.value)


def test_memory_limit_takes_fractions_of_a_gib_under_both_names() -> None:
    for name in ("tf_mlu_memory_limit_gb", "tf_gpu_memory_limit_gb"):
        config = config_from_flags(_parse("--dataset_path=/d", f"--{name}=0.02"))
        assert config.device.memory_limit_gb == 0.02
    with pytest.raises(ConfigError, match=r"--tf_mlu_memory_limit_gb must be positive, got -0\.5"):
        config_from_flags(_parse("--dataset_path=/d", "--tf_mlu_memory_limit_gb=-0.5"))


def test_raw_data_needs_a_path() -> None:
    with pytest.raises(ConfigError, match="--dataset_type=raw needs --dataset_path"):
        config_from_flags(_parse())


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as error:
        config_from_flags(_parse("--batch_size=8", "--epochs=0"))
    message = str(error.value)
    assert "--dataset_path" in message and "--epochs" in message and "--valid_batch_size" in message


def test_written_config_round_trips_as_json(tmp_path) -> None:
    config = config_from_flags(
        _parse("--dataset_type=synthetic", "--batch_size=64", "--valid_batch_size=64")
    )
    path = config_path_for(str(tmp_path / "log.json"))
    assert path.endswith("log.config.json")
    write_config(config, path)
    with open(path, encoding="utf-8") as f:
        written = json.load(f)
    assert written["data"]["batch_size"] == 64
    assert written["data"]["synthetic_cardinalities"] == [1000] * 26
    assert (
        set(written)
        == set(Config().to_dict())
        == {"run", "data", "model", "optimizer", "device", "output", "profiler", "explicit_flags"}
    )
    assert written["explicit_flags"] == ["batch_size", "dataset_type", "valid_batch_size"]
