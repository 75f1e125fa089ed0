"""Command line of ``python -m preproc``."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from preproc.config import ON_BAD_ROW, PreprocConfig, parse_thresholds
from preproc.lock import OutputLockedError
from preproc.numerical import TRANSFORMS
from preproc.pipeline import run
from preproc.rejects import BadRowError
from preproc.user_schema import read_schema


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preproc",
        description=(
            "Turn Criteo TSV files, or CSV/TSV files described by --schema (plain or .gz), "
            "into the split binary dataset (DEVELOPERS.md, 'Binary dataset format'). "
            "Rerunning an interrupted command resumes it."
        ),
    )
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: worker processes of this machine; spark: a Spark job (same output bytes)",
    )
    parser.add_argument(
        "--spark_master",
        help="Spark master URL (default: local[num_workers], or spark-submit's --master)",
    )
    parser.add_argument(
        "--schema",
        help="YAML file naming the input's columns and their roles (README, 'Your own "
        "data'); without it the input is Criteo TSV",
    )
    parser.add_argument("--input_files", nargs="+", required=True, help="inputs in row order")
    parser.add_argument("--output_dir", required=True, help="dataset root to create")
    parser.add_argument(
        "--frequency_threshold",
        type=int,
        default=0,
        help="values seen fewer times share id 0 with missing values (0 or 1: keep all)",
    )
    parser.add_argument(
        "--per_column_thresholds",
        nargs="+",
        metavar="INDEX=T",
        help="override the threshold of tables 0..25 (with --schema: its categorical and multi_hot "
        "columns in order), e.g. 0=20 3=5 (or 0=20,3=5)",
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores; spark: the N of local[N]); "
        "the output does not depend on it",
    )
    parser.add_argument(
        "--test_fraction",
        type=float,
        default=0.1,
        help="inputs not named day_N: last fraction of rows (input order) going to test",
    )
    parser.add_argument("--numerical_transform", choices=sorted(TRANSFORMS), default="log3")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training-set shuffle")
    parser.add_argument(
        "--no_shuffle", action="store_true", help="keep the training rows in input order"
    )
    parser.add_argument("--on_bad_row", choices=ON_BAD_ROW, default="skip")
    parser.add_argument(
        "--unlabeled",
        action="store_true",
        help="rows have no label column (Kaggle test.txt); labels are written as 0",
    )
    parser.add_argument(
        "--unit_mb",
        type=float,
        default=64.0,
        help="size of the byte ranges plain files are cut into (part of the output's identity)",
    )
    parser.add_argument(
        "--shuffle_bucket_rows",
        type=int,
        default=2_000_000,
        help="rows per shuffle bucket: bounds the memory of the shuffle",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> PreprocConfig:
    schema = read_schema(args.schema) if args.schema else None
    return PreprocConfig(
        input_files=tuple(args.input_files),
        output_dir=args.output_dir,
        frequency_thresholds=parse_thresholds(
            args.frequency_threshold, args.per_column_thresholds, schema
        ),
        num_workers=args.num_workers,
        test_fraction=args.test_fraction,
        numerical_transform=args.numerical_transform,
        seed=args.seed,
        shuffle=not args.no_shuffle,
        on_bad_row=args.on_bad_row,
        labeled=not args.unlabeled,
        unit_bytes=int(args.unit_mb * (1 << 20)),
        shuffle_bucket_rows=args.shuffle_bucket_rows,
        schema=schema,
    )


def os_error_message(exc: OSError, output_dir: str) -> str:
    """One line naming the path and the cause of a failed read or write."""
    cause = exc.strerror or str(exc)
    # A failed write() names no file; everything this tool writes is under output_dir.
    where = exc.filename or f"writing under {output_dir}"
    message = f"{where}: {cause}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        message += "; free space and rerun the same command (it continues where it stopped)"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        message += f" (--output_dir {output_dir} must be writable)"
    return message


def _run_spark(config: PreprocConfig, spark_master: str | None) -> None:
    from preproc.spark.session import default_master, pyspark_missing

    missing = pyspark_missing()
    if missing:
        raise ValueError(missing)
    from preproc.spark.engine import run as run_spark

    run_spark(config, default_master(spark_master, config.num_workers))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.spark_master and args.engine != "spark":
        parser.error("--spark_master needs --engine spark")
    try:
        config = config_from_args(args)
        if args.engine == "spark":
            _run_spark(config, args.spark_master)
        else:
            run(config)
    except (ValueError, BadRowError, OutputLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {os_error_message(exc, args.output_dir)}", file=sys.stderr)
        return 1
    return 0
