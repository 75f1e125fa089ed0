"""The run configuration: frozen dataclasses built once from the parsed flags.

`models.flags.config_from_flags` is the only reader of `FLAGS` and builds
these; everything below `dlrm_main.py` receives them. All checks that involve
more than one flag live in `models.config_checks.validate`, which reports every
problem at once, each naming the flags and values involved. This module
imports neither: it is the bottom of the three.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

# The synthetic dataset's default shape is Criteo's: 13 numerical features
# and 26 tables. A binary dataset's shape comes from its feature spec.
SYNTHETIC_NUMERICAL_FEATURES = 13
SYNTHETIC_TABLES = 26
INFERENCE_DEFAULT_STEPS = 1000
# The models of the family (models/model_types.py builds them).
MODEL_TYPES = ("dlrm", "dcnv2")


class ConfigError(ValueError):
    """Invalid flag values or combinations; the message lists every problem."""


@dataclass(frozen=True)
class RunConfig:
    """What to run and for how long."""

    mode: str = "train"
    epochs: int = 1
    max_steps: int = -1  # -1: whole split; inference resolves it to 1000
    evals_per_epoch: int = 1
    skip_eval: bool = False
    print_freq: int = 1000
    benchmark_warmup_steps: int = 0
    seed: int = 12345
    step_timeout_s: float = 600.0  # 0: no step watchdog
    on_nonfinite: str = "stop"  # or "skip" (models/training/nonfinite.py)
    early_stopping_patience: int = 0  # evaluations without a better AUC; 0: never stop


@dataclass(frozen=True)
class DataConfig:
    """Where samples come from and how they are batched (global batch sizes)."""

    dataset_type: str = "raw"
    dataset_path: str | None = None
    batch_size: int = 65536
    valid_batch_size: int = 65536
    prefetch_batches: int = 10
    # None: the dataset's (raw) or SYNTHETIC_NUMERICAL_FEATURES (synthetic);
    # RunData.resolve fills in the number the run uses.
    num_numerical_features: int | None = None
    synthetic_train_batches: int = 64008
    synthetic_valid_batches: int = 1350
    synthetic_cardinalities: tuple[int, ...] = (1000,) * SYNTHETIC_TABLES
    # Ids per row of each synthetic table; empty: 1 for every table.
    synthetic_hotness: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """Model type and dimensions (cardinalities come from the data, not from here)."""

    model_type: str = "dlrm"  # one of MODEL_TYPES
    embedding_dim: int = 128
    bottom_mlp_dims: tuple[int, ...] = (512, 256, 128)
    top_mlp_dims: tuple[int, ...] = (1024, 1024, 512, 256, 1)
    num_numerical_features: int | None = None  # as DataConfig's, resolved from the data
    multi_hot_combiner: str = "sum"  # pooling of multi-hot tables: sum | mean
    # DCNv2 only (MLPerf's DLRM-DCNv2 sizes).
    num_cross_layers: int = 3
    cross_layer_projection_dim: int = 512  # 0: full-rank cross layers
    dropout: float = 0.0  # MLP dropout rate between layers (training only)
    linear: bool = False  # per-id weights summed into the logit (Wide & Deep's wide part)

    @property
    def table_width(self) -> int:
        """Columns of each table row: D, plus the linear part's per-id weight."""
        return self.embedding_dim + int(self.linear)


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and the reference learning-rate schedule."""

    name: str = "sgd"
    learning_rate: float = 24.0
    warmup_steps: int = 8000
    decay_start_step: int = 48000
    decay_steps: int = 24000
    loss_scale: float = 1024.0
    embedding_l2: float = 0.0  # lazy L2 on the rows a batch looks up
    dense_weight_decay: float = 0.0  # decoupled weight decay of the MLP kernels
    embedding_weight_decay: float = 0.0  # decoupled weight decay of the whole tables


@dataclass(frozen=True)
class DeviceConfig:
    """Device selection, precision and threading, resolved by `models/device.py`."""

    device: str = "auto"
    use_mlus: bool = False
    use_gpus: bool = False
    use_horovod: bool = False
    use_amp: bool = False
    enable_xla: bool = False
    memory_limit_gb: float | None = None
    inter_op_parallelism: int | None = None
    intra_op_parallelism: int | None = None


@dataclass(frozen=True)
class OutputConfig:
    """Checkpoints, logs and exports."""

    save_checkpoint_path: str | None = None
    restore_checkpoint_path: str | None = None
    checkpoint_every_n_steps: int = 0
    log_path: str = "dlrm_tf_log.json"
    tensorboard_log_dir: str | None = None
    export_saved_model_path: str | None = None
    # None: the raw-input signature whenever the dataset has vocabularies.
    export_raw_input: bool | None = None
    eval_scores_path: str | None = None
    use_performance: bool = False
    keep_best_checkpoint: bool = False  # also keep <save_checkpoint_path>/best


@dataclass(frozen=True)
class ProfilerConfig:
    """The `tf.profiler` window: steps [start_step, start_step + num_steps) on `rank`."""

    enabled: bool = False
    start_step: int = 1
    num_steps: int = 1
    rank: int = 0
    log_dir: str = "profile"


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    device: DeviceConfig = DeviceConfig()
    output: OutputConfig = OutputConfig()
    profiler: ProfilerConfig = ProfilerConfig()
    # Flags given on the command line: the model settings of a restored checkpoint
    # fill the others (models/run/checkpoint_model.py).
    explicit_flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_path_for(log_path: str) -> str:
    """Where the configuration JSON goes: next to the results log, same stem."""
    stem, _ = os.path.splitext(log_path)
    return stem + ".config.json"


def write_config(config: Config, path: str) -> None:
    """Writes the configuration as indented JSON (atomically: temporary file, rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(config.to_dict(), out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, path)
