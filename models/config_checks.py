"""The checks of a run configuration that span flags: `validate` lists every problem.

`validate` takes a built `Config` (plain frozen data, no flags).
`models.flags.config_from_flags` calls it and raises one `ConfigError` naming
every problem, each with the flags and values involved; a restored
checkpoint's model record is checked with it too (`models/run/checkpoint_model.py`).
"""

from __future__ import annotations

from models.config import MODEL_TYPES, Config


def _positive(problems: list[str], **values: int | float) -> None:
    for name, value in values.items():
        if value <= 0:
            problems.append(f"--{name} must be positive, got {value}")


def _non_negative(problems: list[str], **values: int | float | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            problems.append(f"--{name} must be >= 0, got {value}")


def _validate_run(c: Config, problems: list[str]) -> None:
    run = c.run
    _positive(problems, epochs=run.epochs, print_freq=run.print_freq)
    _non_negative(
        problems,
        benchmark_warmup_steps=run.benchmark_warmup_steps,
        step_timeout_s=run.step_timeout_s,
    )
    if run.max_steps != -1 and run.max_steps <= 0:
        problems.append(f"--max_steps must be -1 (no limit) or positive, got {run.max_steps}")
    if run.mode == "train" and not run.skip_eval and run.evals_per_epoch < 1:
        problems.append(
            f"--evals_per_epoch must be >= 1 when evaluating, got {run.evals_per_epoch} "
            "(use --skip_eval to train without evaluation)"
        )
    _non_negative(problems, early_stopping_patience=run.early_stopping_patience)
    evaluating = run.mode == "train" and not run.skip_eval
    if run.early_stopping_patience > 0 and not evaluating:
        problems.append(
            f"--early_stopping_patience={run.early_stopping_patience} needs evaluations "
            f"(--mode=train without --skip_eval; got --mode={run.mode}"
            f"{', --skip_eval' if run.skip_eval else ''})"
        )
    if c.output.keep_best_checkpoint and not (evaluating and c.output.save_checkpoint_path):
        problems.append(
            "--keep_best_checkpoint needs --mode=train with evaluations (no --skip_eval) and "
            "--save_checkpoint_path (the best checkpoint goes to <save_checkpoint_path>/best)"
        )
    if run.mode == "eval" and not c.output.restore_checkpoint_path:
        problems.append("--mode=eval needs --restore_checkpoint_path (nothing to evaluate)")
    if run.mode == "inference" and run.benchmark_warmup_steps >= run.max_steps:
        problems.append(
            f"--benchmark_warmup_steps={run.benchmark_warmup_steps} must be smaller than the "
            f"inference steps (--max_steps={run.max_steps}), or nothing is measured"
        )


def _validate_data(c: Config, problems: list[str]) -> None:
    data = c.data
    _positive(problems, batch_size=data.batch_size, valid_batch_size=data.valid_batch_size)
    _non_negative(problems, num_numerical_features=data.num_numerical_features)
    _non_negative(problems, prefetch_batches=data.prefetch_batches)
    if data.valid_batch_size != data.batch_size:
        problems.append(
            f"--valid_batch_size ({data.valid_batch_size}) must equal --batch_size "
            f"({data.batch_size}), as in the original implementation"
        )
    if data.dataset_type == "raw" and not data.dataset_path:
        problems.append("--dataset_type=raw needs --dataset_path (or use --dataset_type=synthetic)")
    if data.dataset_type == "synthetic":
        _positive(
            problems,
            synthetic_dataset_train_batches=data.synthetic_train_batches,
            synthetic_dataset_valid_batches=data.synthetic_valid_batches,
        )
        n = len(data.synthetic_cardinalities)
        if n == 0:
            problems.append("--synthetic_dataset_cardinalities needs at least one table")
        bad = [(i, v) for i, v in enumerate(data.synthetic_cardinalities) if v < 1]
        if bad:
            problems.append(
                f"--synthetic_dataset_cardinalities must be >= 1, got (index, value) {bad}"
            )
        if data.synthetic_hotness and len(data.synthetic_hotness) != n:
            problems.append(
                f"--synthetic_dataset_hotness gives {len(data.synthetic_hotness)} values for "
                f"{n} tables (--synthetic_dataset_cardinalities)"
            )
        bad = [(i, v) for i, v in enumerate(data.synthetic_hotness) if v < 1]
        if bad:
            problems.append(f"--synthetic_dataset_hotness must be >= 1, got (index, value) {bad}")
    elif data.synthetic_hotness:
        problems.append(
            "--synthetic_dataset_hotness applies to --dataset_type=synthetic; a binary "
            "dataset's hotness is in its feature_spec.yaml"
        )


def _validate_model(c: Config, problems: list[str]) -> None:
    model = c.model
    _positive(problems, embedding_dim=model.embedding_dim)
    for name, dims in (
        ("bottom_mlp_dims", model.bottom_mlp_dims),
        ("top_mlp_dims", model.top_mlp_dims),
    ):
        if not dims or any(d < 1 for d in dims):
            problems.append(f"--{name} must be a non-empty list of positive widths, got {dims}")
    if model.top_mlp_dims and model.top_mlp_dims[-1] != 1:
        problems.append(f"--top_mlp_dims must end with 1 (one logit), got {model.top_mlp_dims}")
    if model.model_type not in MODEL_TYPES:
        problems.append(
            f"--model_type must be one of {list(MODEL_TYPES)}, got {model.model_type!r}"
        )
    _positive(problems, num_cross_layers=model.num_cross_layers)
    if not 0.0 <= model.dropout < 1.0:
        problems.append(f"--dropout must be in [0, 1), got {model.dropout}")
    _non_negative(problems, cross_layer_projection_dim=model.cross_layer_projection_dim)
    # Both interactions treat the bottom-MLP output as one more embedding.
    if (
        model.num_numerical_features != 0
        and model.bottom_mlp_dims
        and model.bottom_mlp_dims[-1] != model.embedding_dim
    ):
        problems.append(
            f"--bottom_mlp_dims must end with --embedding_dim ({model.embedding_dim}): the "
            f"interaction takes the bottom MLP output as one more feature vector, got "
            f"{model.bottom_mlp_dims}"
        )


def _validate_optimizer(c: Config, problems: list[str]) -> None:
    opt = c.optimizer
    _positive(problems, learning_rate=opt.learning_rate, loss_scale=opt.loss_scale)
    _non_negative(
        problems,
        warmup_steps=opt.warmup_steps,
        decay_start_step=opt.decay_start_step,
        decay_steps=opt.decay_steps,
        embedding_l2=opt.embedding_l2,
        dense_weight_decay=opt.dense_weight_decay,
        embedding_weight_decay=opt.embedding_weight_decay,
    )
    for flag_name, decay in (
        ("dense_weight_decay", opt.dense_weight_decay),
        ("embedding_weight_decay", opt.embedding_weight_decay),
    ):
        if opt.learning_rate * decay >= 1:
            problems.append(
                f"--{flag_name} ({decay}) times --learning_rate ({opt.learning_rate}) must be "
                "below 1: it is the fraction of each weight a step takes away"
            )
    if opt.decay_steps > 0 and opt.decay_start_step < opt.warmup_steps:
        problems.append(
            f"--decay_start_step ({opt.decay_start_step}) must not be before the end of the "
            f"warm-up (--warmup_steps={opt.warmup_steps})"
        )


def _validate_device(c: Config, problems: list[str]) -> None:
    dev = c.device
    if dev.use_mlus and dev.use_gpus:
        problems.append("--use_mlus and --use_gpus are mutually exclusive")
    for flag_name, kind, on in (
        ("use_mlus", "mlu", dev.use_mlus),
        ("use_gpus", "gpu", dev.use_gpus),
    ):
        if on and dev.device not in ("auto", kind):
            problems.append(f"--{flag_name} contradicts --device={dev.device}")
    if dev.memory_limit_gb is not None:
        _positive(problems, tf_mlu_memory_limit_gb=dev.memory_limit_gb)
    _non_negative(
        problems,
        inter_op_parallelism=dev.inter_op_parallelism,
        intra_op_parallelism=dev.intra_op_parallelism,
    )


def _validate_output(c: Config, problems: list[str]) -> None:
    out, prof = c.output, c.profiler
    _non_negative(problems, checkpoint_every_n_steps=out.checkpoint_every_n_steps)
    if out.checkpoint_every_n_steps > 0 and not out.save_checkpoint_path:
        problems.append(
            f"--checkpoint_every_n_steps={out.checkpoint_every_n_steps} needs "
            "--save_checkpoint_path"
        )
    if out.export_raw_input and not out.export_saved_model_path:
        problems.append("--export_raw_input needs --export_saved_model_path")
    if out.export_raw_input and c.data.dataset_type != "raw":
        problems.append(
            f"--export_raw_input needs a dataset written by python -m preproc "
            f"(--dataset_type=raw), got --dataset_type={c.data.dataset_type}"
        )
    if out.eval_scores_path and c.run.mode != "eval":
        problems.append(f"--eval_scores_path needs --mode=eval, got --mode={c.run.mode}")
    if prof.enabled:
        _positive(problems, profiler_start_step=prof.start_step, profiler_steps=prof.num_steps)
        _non_negative(problems, profiled_rank=prof.rank)


def validate(config: Config) -> list[str]:
    """Returns every problem of `config` (empty when valid); checks across flags live here."""
    problems: list[str] = []
    for check in (
        _validate_run,
        _validate_data,
        _validate_model,
        _validate_optimizer,
        _validate_device,
        _validate_output,
    ):
        check(config, problems)
    return problems
