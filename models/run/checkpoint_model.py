"""The model a checkpoint describes, taken into the run configuration.

A checkpoint records the model configuration it was trained with
(``model_config``: every field of `models.config.ModelConfig`, the table
cardinalities and the precision policy; checkpoints written before that
record only the dims in ``model``). Eval, inference, export and a resumed
training run take every model setting their command line does not give from
there, so ``--mode=eval --restore_checkpoint_path=CKPT`` needs no model
flags; a flag that contradicts the checkpoint fails at start naming both
values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from models.config import Config, ConfigError, ModelConfig
from models.config_checks import validate
from models.training import checkpoint as ckpt

# ModelConfig field -> the flag that sets it (the same name unless listed).
_FLAG_OF: dict[str, str] = {}


def model_from_checkpoint(config: Config) -> Config:
    """``config`` completed from the model record of ``--restore_checkpoint_path``."""
    directory = ckpt.resolve_checkpoint(config.output.restore_checkpoint_path)
    record = saved_model_config(ckpt.read_metadata(directory))
    return adopt_checkpoint_model(config, record, frozenset(config.explicit_flags), str(directory))


def model_record(
    model: ModelConfig, cardinalities, policy_name: str, hotness=None, combiners=None
) -> dict[str, Any]:
    """What a checkpoint stores to rebuild its model: config fields, tables, precision.

    ``hotness`` and ``combiners`` (per table, from the data) are recorded when
    a table is multi-hot: the model's inputs and pooling depend on them.
    """
    record = {
        **_plain(dataclasses.asdict(model)),
        "cardinalities": [int(c) for c in cardinalities],
        "precision": policy_name,
    }
    if hotness is not None and any(int(h) != 1 for h in hotness):
        record["hotness"] = [int(h) for h in hotness]
        record["combiners"] = list(combiners)
    return record


def saved_model_config(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's model record; from the recorded dims for older checkpoints."""
    record = metadata.get("model_config")
    if record is None:  # written before the record existed: the dims checked on restore
        record = dict(metadata.get("model", {}))
    return dict(record)


def _plain(value: Any) -> Any:
    """Tuples as lists (JSON's form), recursively, so saved and flag values compare."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def adopt_checkpoint_model(
    config: Config, record: Mapping[str, Any], explicit: frozenset[str], where: str
) -> Config:
    """``config`` with every model setting not given on the command line taken from ``record``.

    Args:
        config: the configuration from the flags.
        record: :func:`saved_model_config` of the checkpoint.
        explicit: names of the flags given on the command line.
        where: the checkpoint, for messages.

    Raises:
        ConfigError: naming every flag that contradicts the checkpoint, with both values.
    """
    problems: list[str] = []
    model_updates: dict[str, Any] = {}

    def take(flag: str, current: Any, saved: Any) -> bool:
        """True when ``saved`` is to be used; records a contradiction of an explicit flag."""
        if _plain(current) == _plain(saved):
            return False
        if flag in explicit:
            problems.append(
                f"--{flag} {_shown(current)} contradicts the checkpoint {where} ({_shown(saved)})"
            )
            return False
        return True

    for field in dataclasses.fields(ModelConfig):
        if field.name not in record:
            continue
        saved = record[field.name]
        if take(_FLAG_OF.get(field.name, field.name), getattr(config.model, field.name), saved):
            model_updates[field.name] = tuple(saved) if isinstance(saved, list) else saved
    data, device = config.data, config.device
    data_updates: dict[str, Any] = {}
    if "num_numerical_features" in model_updates:
        data_updates["num_numerical_features"] = model_updates["num_numerical_features"]
    cardinalities = record.get("cardinalities")
    if data.dataset_type == "synthetic" and cardinalities is not None:
        flag = "synthetic_dataset_cardinalities"
        if take(flag, data.synthetic_cardinalities, cardinalities):
            data_updates["synthetic_cardinalities"] = tuple(int(c) for c in cardinalities)
        hotness = record.get("hotness")
        if hotness is not None and take(
            "synthetic_dataset_hotness", data.synthetic_hotness, hotness
        ):
            data_updates["synthetic_hotness"] = tuple(int(h) for h in hotness)
    device_updates: dict[str, Any] = {}
    precision = record.get("precision")
    # Weights are float32 under every policy: another precision is a choice, not a conflict.
    if precision is not None and "use_amp" not in explicit:
        device_updates["use_amp"] = precision != "float32"
    if problems:
        raise ConfigError("\n".join(problems))
    adopted = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **model_updates),
        data=dataclasses.replace(data, **data_updates),
        device=dataclasses.replace(device, **device_updates),
    )
    invalid = validate(adopted)
    if invalid:
        raise ConfigError(
            f"the model of the checkpoint {where} with this command line is invalid:\n  "
            + "\n  ".join(invalid)
        )
    return adopted
