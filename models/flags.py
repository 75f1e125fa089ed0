"""Every command-line flag of `dlrm_main.py`, defined once and grouped.

Names and defaults follow the original (Cambricon) README table and the NVIDIA
TF2 DLRM run scripts, so their command lines keep working; the flags added by
this project are marked "(new)". Flags are read only here, by
`config_from_flags`, which turns them into the frozen dataclasses of
`models/config.py` and checks them with `models.config_checks.validate`;
nothing below `dlrm_main.py` sees `FLAGS`. The defaults are those of the
dataclasses, written once there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import flags

from models.config import (
    INFERENCE_DEFAULT_STEPS,
    MODEL_TYPES,
    Config,
    ConfigError,
    DataConfig,
    DeviceConfig,
    ModelConfig,
    OptimizerConfig,
    OutputConfig,
    ProfilerConfig,
    RunConfig,
)
from models.config_checks import validate

FLAGS = flags.FLAGS

# Every default below comes from these instances, so a flag and its config
# field cannot disagree.
_RUN, _DATA, _MODEL = RunConfig(), DataConfig(), ModelConfig()
_OPT, _DEVICE = OptimizerConfig(), DeviceConfig()
_OUT, _PROF = OutputConfig(), ProfilerConfig()


def _strings(values: Sequence[int]) -> list[str]:
    """A tuple default as the string list a list flag holds."""
    return [str(v) for v in values]


def _define_run_flags() -> None:
    flags.DEFINE_enum(
        "mode",
        _RUN.mode,
        ["train", "eval", "inference"],
        "train: train with evaluations; eval: restore and evaluate; "
        "inference: benchmark the forward pass (throughput and latency percentiles).",
    )
    flags.DEFINE_integer("epochs", _RUN.epochs, "Number of passes over the training split.")
    flags.DEFINE_integer(
        "max_steps",
        _RUN.max_steps,
        "Stop after this many steps (train) or batches (eval, inference); -1: the whole "
        "split (train/eval) or 1000 batches (inference).",
    )
    flags.DEFINE_integer(
        "evals_per_epoch", _RUN.evals_per_epoch, "Evaluations on the test split per epoch."
    )
    flags.DEFINE_bool("skip_eval", _RUN.skip_eval, "Train without any evaluation.")
    flags.DEFINE_integer(
        "print_freq",
        _RUN.print_freq,
        "Steps between progress lines (step, loss, learning rate, samples/s); the only "
        "points where training waits for the device. Evaluation and inference print "
        "batches done, samples/s and time left every print_freq batches.",
    )
    flags.DEFINE_integer(
        "benchmark_warmup_steps",
        _RUN.benchmark_warmup_steps,
        "First steps excluded from throughput, step-time and latency figures.",
    )
    flags.DEFINE_integer(
        "seed", _RUN.seed, "(new) Seed of weight initialisation, synthetic data and shuffling."
    )
    flags.DEFINE_float(
        "step_timeout_s",
        _RUN.step_timeout_s,
        "(new) End a process in which no training step (or evaluation batch) completed for "
        "this many seconds (a rank that never reaches its next collective would stall every "
        "rank); the first step counts, checkpoints do not. 0: off.",
    )
    flags.DEFINE_enum(
        "on_nonfinite",
        _RUN.on_nonfinite,
        ["stop", "skip"],
        "(new) A step whose loss or gradients hold NaN/Inf is never applied. stop: end the "
        "run at the first one (under float16 loss scaling: after 20 in a row, each lowering "
        "the scale); skip: skip them, end the run after 20 in a row. No checkpoint is written "
        "after the step that ends the run.",
    )
    flags.DEFINE_integer(
        "early_stopping_patience",
        _RUN.early_stopping_patience,
        "(new) Stop training after this many evaluations in a row without a higher AUC "
        "than the best so far (the final checkpoint is still written); 0: never.",
    )


def _define_data_flags() -> None:
    flags.DEFINE_string(
        "dataset_path",
        _DATA.dataset_path,
        "(new name of NVIDIA's) Root of the binary dataset (raw type).",
    )
    flags.DEFINE_enum(
        "dataset_type",
        _DATA.dataset_type,
        ["raw", "synthetic"],
        "raw: the binary dataset under --dataset_path; synthetic: generated in memory.",
    )
    flags.DEFINE_integer("batch_size", _DATA.batch_size, "Global training batch size (all ranks).")
    flags.DEFINE_integer(
        "valid_batch_size",
        _DATA.valid_batch_size,
        "Global evaluation batch size; must equal --batch_size.",
    )
    flags.DEFINE_integer(
        "prefetch_batches", _DATA.prefetch_batches, "Batches the input pipeline prepares ahead."
    )
    flags.DEFINE_integer(
        "num_numerical_features",
        _DATA.num_numerical_features,
        "Numerical (dense) features per sample; default: the dataset's feature spec "
        "(--dataset_type=raw, where a given value must match it) or 13 (synthetic). "
        "0: no bottom MLP.",
    )
    flags.DEFINE_integer(
        "synthetic_dataset_train_batches",
        _DATA.synthetic_train_batches,
        "Training batches of the synthetic dataset.",
    )
    flags.DEFINE_integer(
        "synthetic_dataset_valid_batches",
        _DATA.synthetic_valid_batches,
        "Evaluation batches of the synthetic dataset.",
    )
    flags.DEFINE_list(
        "synthetic_dataset_cardinalities",
        _strings(_DATA.synthetic_cardinalities),
        "Rows of each embedding table of the synthetic dataset (one per categorical feature).",
    )
    flags.DEFINE_list(
        "synthetic_dataset_hotness",
        _strings(_DATA.synthetic_hotness),
        "(new) Ids per row of each synthetic table (multi-hot when > 1), one per "
        "--synthetic_dataset_cardinalities entry; empty: 1 each.",
    )


def _define_model_flags() -> None:
    flags.DEFINE_enum(
        "model_type",
        _MODEL.model_type,
        list(MODEL_TYPES),
        "(new) dlrm: dot-product interaction (Naumov et al., 2019); dcnv2: cross network on "
        "the bottom MLP output and the embeddings, then the top (deep) MLP (Wang et al., "
        "2021). Everything else is shared.",
    )
    flags.DEFINE_integer("embedding_dim", _MODEL.embedding_dim, "Columns of every embedding table.")
    flags.DEFINE_list(
        "bottom_mlp_dims", _strings(_MODEL.bottom_mlp_dims), "Bottom MLP layer widths."
    )
    flags.DEFINE_list(
        "top_mlp_dims", _strings(_MODEL.top_mlp_dims), "Top MLP layer widths (last is 1)."
    )
    flags.DEFINE_enum(
        "multi_hot_combiner",
        _MODEL.multi_hot_combiner,
        ["sum", "mean"],
        "(new) Pooling of a multi-hot feature's vectors, unless its feature spec entry "
        "sets `combiner`.",
    )
    flags.DEFINE_integer(
        "num_cross_layers", _MODEL.num_cross_layers, "(new) DCNv2: cross layers in the network."
    )
    flags.DEFINE_integer(
        "cross_layer_projection_dim",
        _MODEL.cross_layer_projection_dim,
        "(new) DCNv2: rank of the low-rank cross layers (W = U V); 0: full-rank layers.",
    )
    flags.DEFINE_float(
        "dropout",
        _MODEL.dropout,
        "(new) Dropout rate between the layers of the bottom and top MLPs, in training "
        "only (not after an MLP's last layer); 0: none.",
    )
    flags.DEFINE_bool(
        "linear",
        _MODEL.linear,
        "(new) Add a linear part: one weight per id (an extra column of each table), summed "
        "into the logit, as the wide half of Wide & Deep. Helps small logs with strong per-id "
        "effects (docs/small_data.md).",
    )


def _define_optimizer_flags() -> None:
    flags.DEFINE_enum(
        "optimizer",
        _OPT.name,
        ["sgd", "adam", "adagrad"],
        "Optimizer of both dense and embeddings.",
    )
    flags.DEFINE_float("learning_rate", _OPT.learning_rate, "Peak learning rate.")
    flags.DEFINE_integer(
        "warmup_steps", _OPT.warmup_steps, "Steps of linear learning-rate warm-up."
    )
    flags.DEFINE_integer(
        "decay_start_step", _OPT.decay_start_step, "Step at which polynomial decay starts."
    )
    flags.DEFINE_integer(
        "decay_steps", _OPT.decay_steps, "Steps of the polynomial (power 2) decay to 0."
    )
    flags.DEFINE_integer(
        "loss_scale",
        int(_OPT.loss_scale),
        "Static loss scale used when the precision policy is float16.",
    )
    flags.DEFINE_float(
        "embedding_l2",
        _OPT.embedding_l2,
        "(new) L2 on the embedding rows each step looks up, lazily (rows a batch does not "
        "touch are left alone): l2 * row is added to each such row's gradient; 0: none.",
    )
    flags.DEFINE_float(
        "dense_weight_decay",
        _OPT.dense_weight_decay,
        "(new) Decoupled weight decay of the MLP kernels (AdamW style: each step shrinks "
        "them by learning_rate * this, biases excluded); 0: none.",
    )
    flags.DEFINE_float(
        "embedding_weight_decay",
        _OPT.embedding_weight_decay,
        "(new) Decoupled weight decay of the embedding tables: each step shrinks every row, "
        "looked up or not, by learning_rate * this (one pass over the tables per step: "
        "for small logs, see docs/small_data.md); 0: none.",
    )
    flags.DEFINE_integer(
        "auc_thresholds",
        8000,
        "Accepted for compatibility with NVIDIA's scripts; the AUC here is exact (sort based).",
    )


def _define_device_flags() -> None:
    flags.DEFINE_enum(
        "device", _DEVICE.device, ["auto", "mlu", "gpu", "cpu"], "(new) Device kind to train on."
    )
    flags.DEFINE_bool("use_mlus", _DEVICE.use_mlus, "Train on MLUs (same as --device=mlu).")
    flags.DEFINE_bool("use_gpus", _DEVICE.use_gpus, "Train on GPUs (same as --device=gpu).")
    flags.DEFINE_bool(
        "use_horovod",
        _DEVICE.use_horovod,
        "Run under horovodrun (model-parallel tables across ranks).",
    )
    flags.DEFINE_bool(
        "use_amp",
        _DEVICE.use_amp,
        "Mixed precision: float16 on MLU/GPU (loss-scaled), bfloat16 on CPU.",
    )
    flags.DEFINE_alias("amp", "use_amp")
    flags.DEFINE_bool(
        "enable_xla", _DEVICE.enable_xla, "Compile the train step with XLA (jit_compile)."
    )
    flags.DEFINE_alias("xla", "enable_xla")
    flags.DEFINE_float(
        "tf_mlu_memory_limit_gb",
        _DEVICE.memory_limit_gb,
        "GiB of device memory given to TensorFlow per rank (leaves room for collectives); "
        "also the per-rank budget of the table placement, which splits a table larger than "
        "it by rows. Fractions allowed (e.g. 0.02).",
    )
    flags.DEFINE_alias("tf_gpu_memory_limit_gb", "tf_mlu_memory_limit_gb")
    flags.DEFINE_integer(
        "inter_op_parallelism", _DEVICE.inter_op_parallelism, "TensorFlow inter-op threads."
    )
    flags.DEFINE_integer(
        "intra_op_parallelism", _DEVICE.intra_op_parallelism, "TensorFlow intra-op threads."
    )


def _define_output_flags() -> None:
    flags.DEFINE_string(
        "save_checkpoint_path",
        _OUT.save_checkpoint_path,
        "Checkpoint directory written during and after training.",
    )
    flags.DEFINE_string(
        "restore_checkpoint_path",
        _OUT.restore_checkpoint_path,
        "Checkpoint directory restored before running.",
    )
    flags.DEFINE_integer(
        "checkpoint_every_n_steps",
        _OUT.checkpoint_every_n_steps,
        "(new) Also checkpoint every this many steps; 0: only at the end of training.",
    )
    flags.DEFINE_bool(
        "keep_best_checkpoint",
        _OUT.keep_best_checkpoint,
        "(new) Also keep the checkpoint of the best evaluation AUC, in "
        "<save_checkpoint_path>/best (restore, evaluate or export that path); a training "
        "run's --export_saved_model_path then exports it.",
    )
    flags.DEFINE_string("log_path", _OUT.log_path, "DLLogger-style JSON lines log.")
    flags.DEFINE_string(
        "tensorboard_log_dir",
        _OUT.tensorboard_log_dir,
        "(new) Write TensorBoard summaries (loss, lr, auc) here.",
    )
    flags.DEFINE_string(
        "export_saved_model_path",
        _OUT.export_saved_model_path,
        "(new) Write a serving SavedModel (model inputs -> click probability) here.",
    )
    flags.DEFINE_bool(
        "export_raw_input",
        _OUT.export_raw_input,
        "(new) Also give the SavedModel the serve_raw signature (a log's raw fields -> click "
        "probability, preproc's steps inside the graph), from the dataset's vocab/. Unset: "
        "whenever the dataset has them; true: a dataset without them is an error.",
    )
    flags.DEFINE_string(
        "eval_scores_path",
        _OUT.eval_scores_path,
        "(new) --mode=eval: write each evaluated row's click probability here (float32 .npy, "
        "in the test split's row order).",
    )
    flags.DEFINE_bool(
        "use_profiler", _PROF.enabled, "Record a tf.profiler trace of a window of steps."
    )
    flags.DEFINE_integer("profiler_start_step", _PROF.start_step, "First profiled step.")
    flags.DEFINE_integer("profiler_steps", _PROF.num_steps, "Number of profiled steps.")
    flags.DEFINE_integer("profiled_rank", _PROF.rank, "Rank whose steps are profiled.")
    flags.DEFINE_string(
        "profiler_log_dir", None, "(new) Profiler trace directory; default: next to --log_path."
    )
    flags.DEFINE_bool(
        "use_performance",
        _OUT.use_performance,
        "Write a per-step timing summary JSON (mean, p50, p99 step time, samples/s).",
    )


def define_flags() -> None:
    """Defines all flags once; calling it again (tests) is a no-op."""
    if "dataset_type" in FLAGS:
        return
    _define_run_flags()
    _define_data_flags()
    _define_model_flags()
    _define_optimizer_flags()
    _define_device_flags()
    _define_output_flags()


define_flags()


def parse(argv: list[str]) -> flags.FlagValues:
    """Parses `argv` (program name first) from the defaults, so repeated calls don't leak.

    `main(argv)` is called several times in one test process; absl keeps the
    values of the previous parse unless they are reset first.
    """
    for name in list(FLAGS):
        FLAGS[name].unparse()  # back to the default (unparse_flags() also logs a warning)
    FLAGS(argv)
    return FLAGS


def _int_list(flag_name: str, values: Sequence[str], problems: list[str]) -> tuple[int, ...]:
    """Parses a list flag of integers, recording a problem instead of raising."""
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        problems.append(f"--{flag_name} must be a comma-separated list of integers, got {values!r}")
        return ()


def config_from_flags(flag_values: flags.FlagValues) -> Config:
    """Builds and validates the configuration from parsed flags.

    Raises:
        ConfigError: naming every invalid flag value or combination.
    """
    f = flag_values
    problems: list[str] = []
    cardinalities = _int_list(
        "synthetic_dataset_cardinalities", f.synthetic_dataset_cardinalities, problems
    )
    hotness = _int_list("synthetic_dataset_hotness", f.synthetic_dataset_hotness, problems)
    bottom = _int_list("bottom_mlp_dims", f.bottom_mlp_dims, problems)
    top = _int_list("top_mlp_dims", f.top_mlp_dims, problems)
    max_steps = f.max_steps
    if f.mode == "inference" and max_steps == -1:
        max_steps = INFERENCE_DEFAULT_STEPS
    log_dir = os.path.dirname(os.path.abspath(f.log_path))
    config = Config(
        run=RunConfig(
            mode=f.mode,
            epochs=f.epochs,
            max_steps=max_steps,
            evals_per_epoch=f.evals_per_epoch,
            skip_eval=f.skip_eval,
            print_freq=f.print_freq,
            benchmark_warmup_steps=f.benchmark_warmup_steps,
            seed=f.seed,
            step_timeout_s=f.step_timeout_s,
            on_nonfinite=f.on_nonfinite,
            early_stopping_patience=f.early_stopping_patience,
        ),
        data=DataConfig(
            dataset_type=f.dataset_type,
            dataset_path=f.dataset_path,
            batch_size=f.batch_size,
            valid_batch_size=f.valid_batch_size,
            prefetch_batches=f.prefetch_batches,
            num_numerical_features=f.num_numerical_features,
            synthetic_train_batches=f.synthetic_dataset_train_batches,
            synthetic_valid_batches=f.synthetic_dataset_valid_batches,
            synthetic_cardinalities=cardinalities,
            synthetic_hotness=hotness,
        ),
        model=ModelConfig(
            model_type=f.model_type,
            embedding_dim=f.embedding_dim,
            bottom_mlp_dims=bottom,
            top_mlp_dims=top,
            num_numerical_features=f.num_numerical_features,
            multi_hot_combiner=f.multi_hot_combiner,
            num_cross_layers=f.num_cross_layers,
            cross_layer_projection_dim=f.cross_layer_projection_dim,
            dropout=f.dropout,
            linear=f.linear,
        ),
        optimizer=OptimizerConfig(
            name=f.optimizer,
            learning_rate=f.learning_rate,
            warmup_steps=f.warmup_steps,
            decay_start_step=f.decay_start_step,
            decay_steps=f.decay_steps,
            loss_scale=float(f.loss_scale),
            embedding_l2=f.embedding_l2,
            dense_weight_decay=f.dense_weight_decay,
            embedding_weight_decay=f.embedding_weight_decay,
        ),
        device=DeviceConfig(
            device=f.device,
            use_mlus=f.use_mlus,
            use_gpus=f.use_gpus,
            use_horovod=f.use_horovod,
            use_amp=f.use_amp,
            enable_xla=f.enable_xla,
            memory_limit_gb=f.tf_mlu_memory_limit_gb,
            inter_op_parallelism=f.inter_op_parallelism,
            intra_op_parallelism=f.intra_op_parallelism,
        ),
        output=OutputConfig(
            save_checkpoint_path=f.save_checkpoint_path,
            restore_checkpoint_path=f.restore_checkpoint_path,
            checkpoint_every_n_steps=f.checkpoint_every_n_steps,
            log_path=f.log_path,
            tensorboard_log_dir=f.tensorboard_log_dir,
            export_saved_model_path=f.export_saved_model_path,
            export_raw_input=f.export_raw_input,
            eval_scores_path=f.eval_scores_path,
            use_performance=f.use_performance,
            keep_best_checkpoint=f.keep_best_checkpoint,
        ),
        profiler=ProfilerConfig(
            enabled=f.use_profiler,
            start_step=f.profiler_start_step,
            num_steps=f.profiler_steps,
            rank=f.profiled_rank,
            log_dir=f.profiler_log_dir or os.path.join(log_dir, "profile"),
        ),
        explicit_flags=tuple(sorted(name for name in f if f[name].present)),
    )
    problems.extend(validate(config) if not problems else [])
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config
