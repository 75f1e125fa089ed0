"""Validated, frozen options of one preprocessing run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from preproc.inputs import identity
from preproc.numerical import TRANSFORMS
from preproc.row_format import RowFormat
from preproc.schema import NUM_CATEGORICAL
from preproc.user_schema import Schema

ON_BAD_ROW = ("skip", "fail")


@dataclass(frozen=True)
class PreprocConfig:
    """Everything that determines the output bytes, plus the worker count (which does not).

    Attributes:
        input_files: TSV inputs, plain or ``.gz``, in row order.
        output_dir: dataset root (also holds ``_work/`` while running).
        frequency_thresholds: per table, the minimum count for a value to get its own id.
        num_workers: processes; 1 runs everything in this process.
        test_fraction: last fraction of rows going to ``test`` (non ``day_N`` inputs).
        numerical_transform: a key of ``preproc.numerical.TRANSFORMS``.
        seed: seeds the training-set shuffle.
        shuffle: shuffle the training rows (test and validation keep input order).
        on_bad_row: ``skip`` (log and count) or ``fail`` (stop at the first).
        labeled: rows start with a 0/1 label (False: Kaggle ``test.txt`` layout).
        unit_bytes: nominal size of the byte ranges plain files are cut into.
        shuffle_bucket_rows: target rows per shuffle bucket (bounds shuffle memory).
        schema: the input's columns (``preproc.user_schema``); None: Criteo TSV.
    """

    input_files: tuple[str, ...]
    output_dir: str
    frequency_thresholds: tuple[int, ...]
    num_workers: int = 1
    test_fraction: float = 0.1
    numerical_transform: str = "log3"
    seed: int = 0
    shuffle: bool = True
    on_bad_row: str = "skip"
    labeled: bool = True
    unit_bytes: int = 64 << 20
    shuffle_bucket_rows: int = 2_000_000
    schema: Schema | None = None

    @property
    def row_format(self) -> RowFormat:
        return RowFormat(self.schema, self.labeled)

    def __post_init__(self) -> None:
        errors = []
        if not self.input_files:
            errors.append("no input files given")
        directories = [p for p in self.input_files if os.path.isdir(p)]
        if directories:
            errors.append(
                f"input is a directory, not a file: {', '.join(directories)} "
                "(name the files inside, e.g. DIR/day_*)"
            )
        missing = [p for p in self.input_files if not os.path.exists(p)]
        if missing:
            errors.append(f"input files not found: {', '.join(missing)}")
        others = [p for p in self.input_files if os.path.exists(p) and not os.path.isdir(p)]
        special = [p for p in others if not os.path.isfile(p)]
        if special:
            errors.append(f"input is not a regular file: {', '.join(special)}")
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            errors.append(f"output_dir {self.output_dir} exists and is not a directory")
        if len(set(map(os.path.abspath, self.input_files))) != len(self.input_files):
            errors.append("an input file is listed twice")
        tables = self.row_format.num_tables
        if len(self.frequency_thresholds) != tables:
            errors.append(
                f"{tables} frequency thresholds expected, got {len(self.frequency_thresholds)}"
            )
        if self.schema is not None and not self.labeled:
            errors.append("--unlabeled does not apply with --schema (the schema names the label)")
        bad = [t for t in self.frequency_thresholds if t < 0]
        if bad:
            errors.append(f"frequency thresholds must be >= 0, got {bad}")
        if self.num_workers < 1:
            errors.append(f"num_workers must be >= 1, got {self.num_workers}")
        if not 0.0 <= self.test_fraction < 1.0:
            errors.append(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.numerical_transform not in TRANSFORMS:
            errors.append(
                f"numerical_transform must be one of {sorted(TRANSFORMS)}, "
                f"got {self.numerical_transform!r}"
            )
        if self.on_bad_row not in ON_BAD_ROW:
            errors.append(f"on_bad_row must be one of {ON_BAD_ROW}, got {self.on_bad_row!r}")
        if self.unit_bytes < 1024:
            errors.append(f"unit_bytes (--unit_mb x 2**20) must be >= 1024, got {self.unit_bytes}")
        if self.shuffle_bucket_rows < 1:
            errors.append(f"shuffle_bucket_rows must be >= 1, got {self.shuffle_bucket_rows}")
        if errors:
            raise ValueError("invalid preprocessing options: " + "; ".join(errors))

    def fingerprint(self) -> dict:
        """What a resumed run must share with the interrupted one (not the worker count)."""
        options = asdict(self)
        del options["num_workers"], options["output_dir"]
        options["input_files"] = [
            {"path": os.path.abspath(p), **identity(p)} for p in self.input_files
        ]
        options["frequency_thresholds"] = list(self.frequency_thresholds)
        if self.schema is None:
            del options["schema"]  # Criteo runs keep the fingerprint they always had
        else:
            options["schema"] = self.schema.to_dict()
        return options


def parse_thresholds(
    default: int, per_column: list[str] | None, schema: Schema | None = None
) -> tuple[int, ...]:
    """Expands ``default`` and ``["INDEX=T", ...]`` overrides into one threshold per table.

    ``INDEX`` is the table index: 0..25 for Criteo (column C{INDEX+1} of the TSV),
    the categorical and multi-hot columns in order with a schema (whose
    ``frequency_threshold`` keys come before the overrides).
    """
    tables = NUM_CATEGORICAL if schema is None else len(schema.tables)
    thresholds = [default] * tables
    if schema is not None:
        for t, column in enumerate(schema.tables):
            if column.frequency_threshold is not None:
                thresholds[t] = column.frequency_threshold
    for item in per_column or []:
        for pair in filter(None, item.split(",")):
            index, sep, value = pair.partition("=")
            try:
                if not sep:
                    raise ValueError
                i, t = int(index), int(value)
            except ValueError:
                raise ValueError(
                    f"per-column threshold {pair!r} is not INDEX=THRESHOLD (e.g. 0=20)"
                ) from None
            if not 0 <= i < tables:
                raise ValueError(f"per-column threshold {pair!r}: index must be 0..{tables - 1}")
            thresholds[i] = t
    return tuple(thresholds)
