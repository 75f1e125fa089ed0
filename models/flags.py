"""Every command-line flag of `dlrm_main.py`, defined once and grouped.

Names and defaults follow the original (Cambricon) README table and the NVIDIA
TF2 DLRM run scripts, so their command lines keep working; the flags added by
this project are marked "(new)". Flags are read only by `models/config.py`,
which turns them into frozen dataclasses; nothing below `dlrm_main.py` sees
`FLAGS`.
"""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS

# The 26 Criteo tables of NVIDIA's synthetic default.
_DEFAULT_SYNTHETIC_CARDINALITIES = ["1000"] * 26


def _define_run_flags() -> None:
    flags.DEFINE_enum(
        "mode",
        "train",
        ["train", "eval", "inference"],
        "train: train with evaluations; eval: restore and evaluate; "
        "inference: benchmark the forward pass (throughput and latency percentiles).",
    )
    flags.DEFINE_integer("epochs", 1, "Number of passes over the training split.")
    flags.DEFINE_integer(
        "max_steps",
        -1,
        "Stop after this many steps (train) or batches (eval, inference); -1: the whole "
        "split (train/eval) or 1000 batches (inference).",
    )
    flags.DEFINE_integer("evals_per_epoch", 1, "Evaluations on the test split per epoch.")
    flags.DEFINE_bool("skip_eval", False, "Train without any evaluation.")
    flags.DEFINE_integer(
        "print_freq",
        1000,
        "Steps between progress lines (step, loss, learning rate, samples/s); the only "
        "points where training waits for the device.",
    )
    flags.DEFINE_integer(
        "benchmark_warmup_steps",
        0,
        "First steps excluded from throughput, step-time and latency figures.",
    )
    flags.DEFINE_integer(
        "seed", 12345, "(new) Seed of weight initialisation, synthetic data and shuffling."
    )
    flags.DEFINE_float(
        "step_timeout_s",
        600.0,
        "(new) End a process in which no training step (or evaluation batch) completed for "
        "this many seconds (a rank that never reaches its next collective would stall every "
        "rank); the first step counts, checkpoints do not. 0: off.",
    )


def _define_data_flags() -> None:
    flags.DEFINE_string(
        "dataset_path", None, "(new name of NVIDIA's) Root of the binary dataset (raw type)."
    )
    flags.DEFINE_enum(
        "dataset_type",
        "raw",
        ["raw", "synthetic"],
        "raw: the binary dataset under --dataset_path; synthetic: generated in memory.",
    )
    flags.DEFINE_integer("batch_size", 65536, "Global training batch size (all ranks).")
    flags.DEFINE_integer(
        "valid_batch_size", 65536, "Global evaluation batch size; must equal --batch_size."
    )
    flags.DEFINE_integer("prefetch_batches", 10, "Batches the input pipeline prepares ahead.")
    flags.DEFINE_integer("num_numerical_features", 13, "Numerical (dense) features per sample.")
    flags.DEFINE_integer(
        "synthetic_dataset_train_batches", 64008, "Training batches of the synthetic dataset."
    )
    flags.DEFINE_integer(
        "synthetic_dataset_valid_batches", 1350, "Evaluation batches of the synthetic dataset."
    )
    flags.DEFINE_list(
        "synthetic_dataset_cardinalities",
        _DEFAULT_SYNTHETIC_CARDINALITIES,
        "Rows of each embedding table of the synthetic dataset (one per categorical feature).",
    )


def _define_model_flags() -> None:
    flags.DEFINE_integer("embedding_dim", 128, "Columns of every embedding table.")
    flags.DEFINE_list("bottom_mlp_dims", ["512", "256", "128"], "Bottom MLP layer widths.")
    flags.DEFINE_list(
        "top_mlp_dims", ["1024", "1024", "512", "256", "1"], "Top MLP layer widths (last is 1)."
    )


def _define_optimizer_flags() -> None:
    flags.DEFINE_enum(
        "optimizer", "sgd", ["sgd", "adam", "adagrad"], "Optimizer of both dense and embeddings."
    )
    flags.DEFINE_float("learning_rate", 24.0, "Peak learning rate.")
    flags.DEFINE_integer("warmup_steps", 8000, "Steps of linear learning-rate warm-up.")
    flags.DEFINE_integer("decay_start_step", 48000, "Step at which polynomial decay starts.")
    flags.DEFINE_integer("decay_steps", 24000, "Steps of the polynomial (power 2) decay to 0.")
    flags.DEFINE_integer(
        "loss_scale", 1024, "Static loss scale used when the precision policy is float16."
    )
    flags.DEFINE_integer(
        "auc_thresholds",
        8000,
        "Accepted for compatibility with NVIDIA's scripts; the AUC here is exact (sort based).",
    )


def _define_device_flags() -> None:
    flags.DEFINE_enum(
        "device", "auto", ["auto", "mlu", "gpu", "cpu"], "(new) Device kind to train on."
    )
    flags.DEFINE_bool("use_mlus", False, "Train on MLUs (same as --device=mlu).")
    flags.DEFINE_bool("use_gpus", False, "Train on GPUs (same as --device=gpu).")
    flags.DEFINE_bool(
        "use_horovod", False, "Run under horovodrun (model-parallel tables across ranks)."
    )
    flags.DEFINE_bool(
        "use_amp", False, "Mixed precision: float16 on MLU/GPU (loss-scaled), bfloat16 on CPU."
    )
    flags.DEFINE_alias("amp", "use_amp")
    flags.DEFINE_bool("enable_xla", False, "Compile the train step with XLA (jit_compile).")
    flags.DEFINE_alias("xla", "enable_xla")
    flags.DEFINE_integer(
        "tf_mlu_memory_limit_gb",
        None,
        "GiB of device memory given to TensorFlow per rank (leaves room for collectives).",
    )
    flags.DEFINE_alias("tf_gpu_memory_limit_gb", "tf_mlu_memory_limit_gb")
    flags.DEFINE_integer("inter_op_parallelism", None, "TensorFlow inter-op threads.")
    flags.DEFINE_integer("intra_op_parallelism", None, "TensorFlow intra-op threads.")


def _define_output_flags() -> None:
    flags.DEFINE_string(
        "save_checkpoint_path",
        None,
        "Checkpoint directory written during and after training.",
    )
    flags.DEFINE_string(
        "restore_checkpoint_path", None, "Checkpoint directory restored before running."
    )
    flags.DEFINE_integer(
        "checkpoint_every_n_steps",
        0,
        "(new) Also checkpoint every this many steps; 0: only at the end of training.",
    )
    flags.DEFINE_string("log_path", "dlrm_tf_log.json", "DLLogger-style JSON lines log.")
    flags.DEFINE_string(
        "tensorboard_log_dir", None, "(new) Write TensorBoard summaries (loss, lr, auc) here."
    )
    flags.DEFINE_string(
        "export_saved_model_path",
        None,
        "(new) Write a serving SavedModel (raw features -> click probability) here.",
    )
    flags.DEFINE_bool("use_profiler", False, "Record a tf.profiler trace of a window of steps.")
    flags.DEFINE_integer("profiler_start_step", 1, "First profiled step.")
    flags.DEFINE_integer("profiler_steps", 1, "Number of profiled steps.")
    flags.DEFINE_integer("profiled_rank", 0, "Rank whose steps are profiled.")
    flags.DEFINE_string(
        "profiler_log_dir", None, "(new) Profiler trace directory; default: next to --log_path."
    )
    flags.DEFINE_bool(
        "use_performance",
        False,
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
