"""Score raw log files with an exported model's ``serve_raw`` signature.

    python -m tools.predict --model SAVED_MODEL --input_files F [F ...] --output scores.tsv
        [--schema S.yaml] [--unlabeled] [--batch_size 2048] [--rejects FILE]

Reads plain or ``.gz`` files as ``python -m preproc`` does, with its own
readers and parsers (``preproc.units``, ``fast_parse``/``csv_parse``): Criteo
TSV for a model exported from a Criteo dataset (``--unlabeled`` for files
without the label column), else CSV/TSV described by the schema the model
recorded, or by ``--schema`` (its columns must include, by name and role,
every column the model takes; order and other columns are free). A line
``preproc`` would reject is written to the rejects file (``file``, ``line``,
``reason``, ``detail``, the raw line; ``OUTPUT.rejects.tsv`` by default) and
counted; every accepted row gets one output line, in input order:

    path:line<TAB>click probability

Files are read in blocks and scored in batches, so memory does not grow with
the input; a progress bar shows the bytes read (on a terminal). The model
loads with TensorFlow alone, as a server loads it: the raw fields go through
the preprocessing inside the SavedModel. Errors are one line
``tools.predict: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from preproc.config import PreprocConfig
from preproc.count_pass import UnitSummary
from preproc.csv_parse import CsvParser, split_line
from preproc.fast_parse import parse_lines
from preproc.pipeline import check_layout
from preproc.rejects import RejectLog
from preproc.row_format import RowFormat
from preproc.units import UnitReader, plan_units
from preproc.user_schema import Schema, SchemaError, parse_schema, read_schema

SIGNATURE_INFO_FILE = "dlrm_signature.json"  # models/export.py writes it beside the graph
_UNIT_BYTES = 64 << 20


class PredictError(Exception):
    """Bad arguments, a model without the raw-input signature, unreadable inputs."""


@dataclass(frozen=True)
class RowReader:
    """How to read the input files: the row format and where each model input sits.

    Attributes:
        row_format: Criteo's (``schema`` None, ``labeled``) or the file schema's.
        inputs: the model's raw input keys, in the order ``positions`` gives them.
        positions: for each input, its field index in a line (label included).
    """

    row_format: RowFormat
    inputs: tuple[str, ...]
    positions: tuple[int, ...]

    @classmethod
    def for_model(
        cls, raw_inputs: dict[str, Any], schema: Schema | None, labeled: bool
    ) -> RowReader:
        columns = raw_inputs["columns"]
        inputs = tuple(c["input"] for c in columns)
        if raw_inputs["format"] == "criteo":
            if schema is not None:
                raise PredictError("--schema does not apply: the model takes Criteo rows")
            first = 1 if labeled else 0
            return cls(RowFormat(None, labeled), inputs, tuple(range(first, first + len(inputs))))
        if not labeled:
            raise PredictError("--unlabeled does not apply with a schema (it names the label)")
        if schema is None:
            schema = parse_schema(raw_inputs["schema"], "the schema recorded in the model")
        by_name = {c.name: (i, c.role) for i, c in enumerate(schema.columns)}
        positions = []
        for c in columns:
            found = by_name.get(c["name"])
            if found is None or found[1] != c["role"]:
                raise PredictError(
                    f"{schema.path}: the model takes a {c['role']} column {c['name']!r}; the "
                    f"schema has {'no such column' if found is None else f'it as {found[1]}'}"
                )
            positions.append(found[0])
        return cls(RowFormat(schema, True), inputs, tuple(positions))


@dataclass
class Rows:
    """Accepted rows of one block: where each is, and its raw fields per model input."""

    where: list[str]
    fields: list[list[bytes]]


def _lines(block: bytes) -> list[bytes]:
    lines = block.split(b"\n")
    return lines[:-1] if lines and lines[-1] == b"" else lines


def read_rows(
    paths: list[str],
    reader: RowReader,
    rejects: RejectLog,
    on_bytes: Callable[[int], object] = lambda n: None,
) -> Iterator[Rows]:
    """Accepted rows of ``paths`` block by block, in input order; rejects go to ``rejects``.

    Line numbers are those of ``preproc``'s rejects file (1-based, a header is line 1).
    ``on_bytes(n)``: ``n`` more bytes of the files were read (a ``.gz`` file's, when done).
    """
    schema = reader.row_format.schema
    first_line = 2 if schema is not None and schema.header else 1
    next_line: dict[int, int] = {}
    for unit in plan_units(paths, _UNIT_BYTES):
        units_reader = UnitReader(unit)
        skip = schema is not None and schema.header and unit.start == 0
        parser = CsvParser(schema, "log3") if schema is not None else None
        for block in units_reader:
            start = next_line.get(unit.file_index, first_line)
            if parser is None:
                parsed = parse_lines(block, reader.row_format.labeled)
                lines, truncated = _lines(block), None
            else:
                parsed = parser.parse(block, skip_first_line=skip)
                lines, truncated = _lines(block)[1 if skip else 0 :], parsed.truncated
                skip = False
            rejected = set(parsed.reject_lines.tolist())
            rows = Rows([], [])
            for index, line in enumerate(lines):
                if index in rejected:
                    continue
                line = line.removesuffix(b"\r")
                if parser is None:
                    fields = line.split(b"\t")
                else:
                    text = split_line(line.decode("latin-1"), schema.delimiter)
                    fields = [f.encode("latin-1") for f in text]
                rows.where.append(f"{unit.path}:{start + index}")
                rows.fields.append([fields[p] for p in reader.positions])
            rejects.add(
                unit,
                UnitSummary(
                    unit.index,
                    parsed.num_lines,
                    len(rows.where),
                    parsed.reject_lines,
                    parsed.reject_codes,
                    list(zip(parsed.reject_details, parsed.reject_raw, strict=True)),
                    truncated,
                ),
            )
            next_line[unit.file_index] = start + parsed.num_lines
            if not unit.compressed:
                on_bytes(len(block))
            yield rows
        if units_reader.error is not None:
            message, tail = units_reader.error
            code = np.array([reader.row_format.gzip_error_code], np.uint8)
            summary = UnitSummary(unit.index, 1, 0, np.zeros(1, np.int64), code, [(message, tail)])
            rejects.add(unit, summary)
        if unit.compressed:
            on_bytes(unit.end)


class Scorer:
    """The SavedModel's ``serve_raw`` signature over batches of raw rows."""

    def __init__(self, model: str, inputs: tuple[str, ...]) -> None:
        import tensorflow as tf  # here: --help and argument errors stay fast

        self._tf = tf
        self._signature = tf.saved_model.load(model).signatures["serve_raw"]
        self._inputs = inputs

    def __call__(self, rows: list[list[bytes]]) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities float32 [n], reject reasons [n])`` of rows of raw fields."""
        tf = self._tf
        columns = {
            key: tf.constant([row[j] for row in rows], tf.string)
            for j, key in enumerate(self._inputs)
        }
        out = self._signature(**columns)
        return out["probability"].numpy()[:, 0], out["reject_reason"].numpy()


def _raw_inputs(model: str) -> dict[str, Any]:
    info_path = Path(model) / SIGNATURE_INFO_FILE
    if not info_path.is_file():
        raise PredictError(f"{info_path} is missing: is {model} a SavedModel of this project?")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if "raw_inputs" not in info:
        raise PredictError(
            f"{model} has no serve_raw signature: export it with the training dataset "
            "(dlrm_main.py --export_saved_model_path with --dataset_path DATA, or "
            "python -m tools.export CKPT OUT --dataset DATA)"
        )
    return info["raw_inputs"]


def _progress(total: int):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in a log file.
    return tqdm(total=total, unit="B", unit_scale=True, desc="scoring", disable=None)


def predict(
    model: str,
    paths: list[str],
    output: str,
    schema: Schema | None = None,
    labeled: bool = True,
    batch_size: int = 2048,
    rejects_path: str | None = None,
) -> dict[str, Any]:
    """Scores every accepted row of ``paths``; returns the counts (``summary`` of ``main``)."""
    if batch_size < 1:
        raise PredictError(f"--batch_size must be >= 1, got {batch_size}")
    reader = RowReader.for_model(_raw_inputs(model), schema, labeled)
    row_format = reader.row_format
    try:  # preproc's checks of the inputs: files exist, the layout, a schema's header
        config = PreprocConfig(
            input_files=tuple(paths),
            output_dir=os.path.dirname(os.path.abspath(output)),
            frequency_thresholds=(0,) * row_format.num_tables,
            labeled=row_format.labeled,
            schema=row_format.schema,
        )
        check_layout(config)
    except (ValueError, SchemaError) as error:
        raise PredictError(str(error)) from None
    scorer = Scorer(model, reader.inputs)
    rejects_path = rejects_path or output + ".rejects.tsv"
    header = row_format.schema is not None and row_format.schema.header
    rejects = RejectLog(rejects_path, fail=False, reasons=row_format.reasons, header=header)
    started, scored = time.perf_counter(), 0
    completed = False
    progress = _progress(sum(os.path.getsize(p) for p in paths))
    try:
        with open(output, "w", encoding="utf-8") as out:

            def score(where: list[str], fields: list[list[bytes]]) -> None:
                probabilities, reasons = scorer(fields)
                refused = np.flatnonzero(reasons != b"")
                if refused.size:  # preproc accepted them: the two disagree, never hide it
                    raise PredictError(
                        f"{where[refused[0]]}: preproc accepts the row but the model's serve_raw "
                        f"refuses it ({reasons[refused[0]].decode()}); please report this"
                    )
                out.writelines(
                    f"{w}\t{p:.9g}\n" for w, p in zip(where, probabilities.tolist(), strict=True)
                )

            pending = Rows([], [])
            for rows in read_rows(paths, reader, rejects, progress.update):
                pending.where += rows.where
                pending.fields += rows.fields
                while len(pending.where) >= batch_size:
                    score(pending.where[:batch_size], pending.fields[:batch_size])
                    del pending.where[:batch_size], pending.fields[:batch_size]
                    scored += batch_size
            if pending.where:
                score(pending.where, pending.fields)
                scored += len(pending.where)
        completed = True
    finally:
        progress.close()
        rejects.close(completed)
    seconds = time.perf_counter() - started
    return {
        "lines": rejects.lines_read,
        "scored": scored,
        "rejected": dict(rejects.counts),
        "seconds": seconds,
        "output": output,
        "rejects": rejects_path,
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="SavedModel exported with serve_raw")
    parser.add_argument("--input_files", nargs="+", required=True, help="logs, plain or .gz")
    parser.add_argument("--output", required=True, help="scores: path:line<TAB>probability")
    parser.add_argument("--schema", help="the files' schema (default: the model's)")
    parser.add_argument(
        "--unlabeled", action="store_true", help="Criteo rows without the label column"
    )
    parser.add_argument("--batch_size", type=int, default=2048, help="rows per model call")
    parser.add_argument("--rejects", help="rejected lines (default: OUTPUT.rejects.tsv)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        schema = read_schema(args.schema) if args.schema else None
        summary = predict(
            args.model,
            args.input_files,
            args.output,
            schema,
            not args.unlabeled,
            args.batch_size,
            args.rejects,
        )
    except (PredictError, SchemaError, OSError) as error:
        print(f"tools.predict: {error}", file=sys.stderr)
        return 2
    rejected = summary["rejected"]
    reasons = ", ".join(f"{k} {v}" for k, v in rejected.items() if v) or "none"
    rate = summary["scored"] / summary["seconds"] if summary["seconds"] else 0.0
    print(
        f"scored {summary['scored']:,} of {summary['lines']:,} lines in "
        f"{summary['seconds']:.1f} s ({rate:,.0f} rows/s) -> {summary['output']}\n"
        f"rejected {sum(rejected.values()):,} ({reasons}) -> {summary['rejects']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
