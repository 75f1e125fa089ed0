"""Runs a preprocessing job: plan, pass 1, vocabularies, pass 2, assembly, metadata.

Every step skips the work whose done marker exists, so rerunning an
interrupted command continues where it stopped and writes the same bytes.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from models.data.feature_spec import METADATA_FILE, SPLITS, categorical_dtype
from preproc.assemble import (
    AssembleTask,
    assemble,
    finalize,
    num_shuffle_buckets,
    plan_assembly,
    preallocate,
)
from preproc.config import PreprocConfig
from preproc.count_pass import CountTask, count_unit, load_summary
from preproc.csv_parse import split_line
from preproc.inputs import changed_inputs, identity
from preproc.lock import OutputDirLock
from preproc.metadata import peak_memory_mb, write_dataset_metadata, write_summary
from preproc.multi_hot import ListLengths
from preproc.rejects import REJECTS_FILE, RejectLog
from preproc.row_format import RowFormat
from preproc.schema import num_fields
from preproc.splits import plan_splits, split_rule
from preproc.transform_pass import TransformTask, is_done, transform_unit
from preproc.units import Unit, first_line, plan_units
from preproc.user_schema import SchemaError
from preproc.vocab_pass import VocabTask, build_table, load_column_stats
from preproc.workdir import WorkDir, load_json, save_json
from preproc.workers import Workers

# What an engine's passes give the shared epilogue: the reject log, per-table column
# statistics, cardinalities, rows per split, the rows accepted from each input file and
# the multi-hot list lengths (which set the hotness pass 2 wrote).
PassesResult = tuple[RejectLog, list[dict], list[int], dict[str, int], list[int], ListLengths]
# Another engine (``preproc.spark``): everything up to complete split files and
# vocabularies, filling ``timings`` with the local engine's step names.
Engine = Callable[[PreprocConfig, WorkDir, dict], PassesResult]

# Called after each finished task with (step name, task index), and at the end with
# ("finish", 0..2) around the final writes; tests use it to interrupt a run at any point.
TaskHook = Callable[[str, int], None]


def _check_header(config: PreprocConfig) -> None:
    """With a schema whose ``header`` is true, every file's first line must name its columns."""
    schema = config.schema
    if schema is None or not schema.header:
        return
    names = [c.name for c in schema.columns]
    for path in config.input_files:
        line = first_line(path)
        if not line:
            continue
        text = line.decode("utf-8", errors="replace")
        try:
            header = [h.strip() for h in split_line(text, schema.delimiter)]
        except ValueError:
            header = [text]
        if header != names:
            raise SchemaError(
                f"{path}:1: the header {header} does not match the columns of {schema.path} {names}"
            )


def check_layout(config: PreprocConfig) -> None:
    """Fails early when a file clearly has (or lacks) the label column, or its header
    disagrees with the schema."""
    if config.schema is not None:
        _check_header(config)
        return
    expected = num_fields(config.labeled)
    for path in config.input_files:
        line = first_line(path)
        if not line:
            continue
        fields = line.count(b"\t") + 1
        if config.labeled and fields == expected - 1:
            raise ValueError(
                f"{path}:1 has {fields} fields: it looks unlabeled (Kaggle test.txt layout); "
                "pass --unlabeled to accept it"
            )
        if not config.labeled and fields == expected + 1:
            raise ValueError(f"{path}:1 has {fields} fields (labeled); drop --unlabeled")


def _check_complete_dataset(config: PreprocConfig, metadata: dict) -> None:
    """A rerun of a finished command is a no-op; with other options or inputs it is an
    error (the dataset is kept: deleting it is the user's decision)."""
    wanted = {
        "numerical_transform": config.numerical_transform,
        "frequency_thresholds": list(config.frequency_thresholds),
        "seed": config.seed,
        "shuffled": config.shuffle,
        "labeled": config.labeled,
    }
    if config.schema is not None:
        wanted["schema"] = config.schema.to_dict()
    changed = sorted(k for k, v in wanted.items() if metadata.get(k) != v)
    inputs = changed_inputs(metadata.get("input_files", []), config.input_files)
    if inputs:
        changed.append("input_files: " + "; ".join(inputs))
    if changed:
        raise ValueError(
            f"{config.output_dir} holds a complete dataset made with other options or inputs "
            f"(differs in: {', '.join(changed)}); delete it or choose another --output_dir"
        )


def _remove_leftovers(workdir: WorkDir) -> None:
    """What a run killed after its commit point (metadata.json) may have left behind."""
    shutil.rmtree(workdir.work, ignore_errors=True)
    for name in os.listdir(workdir.root):
        if name.endswith(".tmp"):
            os.remove(workdir.output(name))


def _prepare_workdir(config: PreprocConfig, workdir: WorkDir) -> None:
    fingerprint = config.fingerprint()
    if os.path.exists(workdir.config()):
        previous = load_json(workdir.config())
        if previous != fingerprint:
            changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
            raise ValueError(
                f"{workdir.work} holds an unfinished run with other options or inputs "
                f"(differs in: {', '.join(changed)}); rerun it with the same command, "
                "or delete that directory to start over"
            )
    workdir.make()
    save_json(workdir.config(), fingerprint)


def _progress(desc: str, total: int | None) -> tqdm:
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, file=sys.stderr)


class _Step:
    """Times a step and remembers its row rate for the summary."""

    def __init__(self, timings: dict, name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> _Step:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = round(time.perf_counter() - self.start, 3)


def reject_log(config: PreprocConfig, workdir: WorkDir) -> RejectLog:
    """The run's ``rejects.tsv``, open for the units' rejects in unit order (both engines)."""
    return RejectLog(
        workdir.output(REJECTS_FILE),
        fail=config.on_bad_row == "fail",
        reasons=config.row_format.reasons,
        header=config.schema is not None and config.schema.header,
    )


def _count_pass(
    config: PreprocConfig,
    workdir: WorkDir,
    workers: Workers,
    units: list[Unit],
    hook: TaskHook,
) -> tuple[RejectLog, list[int], ListLengths]:
    todo = [u for u in units if not os.path.exists(workdir.pass1(u.index))]
    tasks = [
        CountTask(
            u, config.output_dir, config.labeled, config.numerical_transform, config.row_format
        )
        for u in todo
    ]
    log = reject_log(config, workdir)
    lengths = ListLengths.empty(config.row_format.num_tables)
    unit_rows = []
    results = workers.map(count_unit, tasks)
    completed = False
    try:
        with _progress("pass 1/2: count", None) as bar:
            todo_indices = {u.index for u in todo}
            for unit in units:  # in unit order, so rejects and line numbers are ordered
                if unit.index in todo_indices:
                    next(results)
                summary = load_summary(workdir, unit.index)
                log.add(unit, summary)
                lengths.add(summary.truncated, summary.longest)
                unit_rows.append(summary.num_rows)
                bar.update(summary.num_lines)
                if unit.index in todo_indices:
                    hook("count", unit.index)
        completed = True
    finally:
        log.close(completed)
    return log, unit_rows, lengths


def _vocab_pass(
    config: PreprocConfig, workdir: WorkDir, workers: Workers, num_units: int, hook: TaskHook
) -> None:
    tasks = [
        VocabTask(t, config.output_dir, num_units, config.frequency_thresholds[t])
        for t in range(config.row_format.num_tables)
        if not os.path.exists(workdir.vocab(t))
    ]
    for table in workers.map(build_table, tasks):
        hook("vocab", table)


def _transform_pass(
    config: PreprocConfig,
    workdir: WorkDir,
    workers: Workers,
    units: list[Unit],
    unit_rows: list[int],
    ranges: list,
    cat_dtypes: tuple[str, ...],
    num_buckets: int,
    hook: TaskHook,
    row_format: RowFormat,
) -> None:
    tasks = [
        TransformTask(
            unit_index=u.index,
            output_dir=config.output_dir,
            cat_dtypes=cat_dtypes,
            ranges=tuple(ranges[u.index]),
            expected_rows=unit_rows[u.index],
            num_buckets=num_buckets,
            seed=config.seed,
            row_format=row_format,
        )
        for u in units
        if not is_done(workdir, u.index)
    ]
    results = workers.map(transform_unit, tasks)
    with _progress("pass 2/2: transform", sum(unit_rows)) as bar:
        bar.update(sum(unit_rows) - sum(t.expected_rows for t in tasks))
        for task, index in zip(tasks, results, strict=True):
            bar.update(task.expected_rows)
            hook("transform", index)


def _assemble(
    workdir: WorkDir,
    workers: Workers,
    tasks: dict[str, list[AssembleTask]],
    split_rows: dict[str, int],
    cat_dtypes: tuple[str, ...],
    hook: TaskHook,
    row_format: RowFormat,
) -> None:
    for split in SPLITS:
        preallocate(workdir, split, split_rows[split], cat_dtypes, row_format)
    flat = [
        t
        for split in SPLITS
        for t in tasks[split]
        if not os.path.exists(workdir.assembled(t.split, t.task_index))
    ]
    results = workers.map(assemble, flat)
    with _progress("writing splits", sum(split_rows.values())) as bar:
        bar.update(sum(split_rows.values()) - sum(t.rows for t in flat))
        for task, rows in zip(flat, results, strict=True):
            bar.update(rows)
            hook("assemble", task.task_index)
    for split in SPLITS:
        finalize(workdir, split, cat_dtypes, row_format)


def check_rows_accepted(config: PreprocConfig, log: RejectLog) -> None:
    """After pass 1 (both engines): a run that accepted no row at all is an error."""
    if log.rows_accepted == 0:
        raise ValueError(
            f"no valid rows in {len(config.input_files)} input file(s) "
            f"({log.lines_read} lines read, rejects by reason: {log.counts})"
        )


def plan_split_rows(
    config: PreprocConfig, units: Sequence[Any], unit_rows: Sequence[int]
) -> tuple[list, dict[str, int], int]:
    """Each unit's row ranges per split, the rows of each split, and the number of
    shuffle buckets of ``train``.

    Both engines call this once pass 1 has counted every unit's rows. The bucket
    count depends on the row count only, never on the workers.
    """
    ranges = plan_splits(list(config.input_files), units, list(unit_rows), config.test_fraction)
    split_rows = dict.fromkeys(SPLITS, 0)
    for unit_ranges in ranges:
        for split, lo, hi in unit_ranges:
            split_rows[split] += hi - lo
    return (
        ranges,
        split_rows,
        num_shuffle_buckets(split_rows["train"], config.shuffle_bucket_rows, config.shuffle),
    )


def _passes(
    config: PreprocConfig, workdir: WorkDir, workers: Workers, hook: TaskHook, timings: dict
) -> PassesResult:
    """Everything up to complete split files; returns what the metadata needs and the
    rows accepted from each input file."""
    units = plan_units(list(config.input_files), config.unit_bytes)
    with _Step(timings, "pass1_count_s"):
        log, unit_rows, lengths = _count_pass(config, workdir, workers, units, hook)
    check_rows_accepted(config, log)
    row_format = lengths.row_format(config.row_format)  # multi-hot tables at their hotness
    with _Step(timings, "vocabulary_s"):
        _vocab_pass(config, workdir, workers, len(units), hook)
    stats = [load_column_stats(workdir, t) for t in range(config.row_format.num_tables)]
    cardinalities = [s["vocab_size"] + 1 for s in stats]
    cat_dtypes = tuple(categorical_dtype(c).name for c in cardinalities)

    ranges, split_rows, num_buckets = plan_split_rows(config, units, unit_rows)
    with _Step(timings, "pass2_transform_s"):
        _transform_pass(
            config,
            workdir,
            workers,
            units,
            unit_rows,
            ranges,
            cat_dtypes,
            num_buckets,
            hook,
            row_format,
        )
    with _Step(timings, "assembly_s"):
        tasks = plan_assembly(
            config.output_dir, config.seed, ranges, cat_dtypes, num_buckets, row_format
        )
        _assemble(workdir, workers, tasks, split_rows, cat_dtypes, hook, row_format)
    file_rows = [0] * len(config.input_files)
    for unit, rows in zip(units, unit_rows, strict=True):
        file_rows[unit.file_index] += rows
    return log, stats, cardinalities, split_rows, file_rows, lengths


def run(config: PreprocConfig, hook: TaskHook | None = None, engine: Engine | None = None) -> dict:
    """Preprocesses ``config.input_files`` into ``config.output_dir``.

    Holds the output directory's lock throughout (``preproc.lock``). ``engine``
    replaces the local passes (worker processes) by another engine's; checks,
    metadata and summary are the same. Returns the run summary, or the metadata
    when the dataset was already complete.
    """
    with OutputDirLock(config.output_dir):
        return _run_locked(config, hook or (lambda step, index: None), engine)


def _run_locked(config: PreprocConfig, hook: TaskHook, engine: Engine | None) -> dict:
    workdir = WorkDir(config.output_dir)
    if os.path.exists(workdir.output(METADATA_FILE)):
        metadata = load_json(workdir.output(METADATA_FILE))
        _check_complete_dataset(config, metadata)
        _remove_leftovers(workdir)
        print(f"{config.output_dir} is already a complete dataset ({METADATA_FILE} exists)")
        return metadata
    inputs = [{"path": p, **identity(p)} for p in config.input_files]
    check_layout(config)
    _prepare_workdir(config, workdir)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if engine is not None:
        log, stats, cardinalities, split_rows, file_rows, lengths = engine(config, workdir, timings)
    else:
        workers = Workers(config.num_workers)
        completed = False
        try:
            log, stats, cardinalities, split_rows, file_rows, lengths = _passes(
                config, workdir, workers, hook, timings
            )
            completed = True
        finally:
            workers.close(completed)
    changed = changed_inputs(inputs, config.input_files)
    if changed:
        raise ValueError(
            f"input changed while being preprocessed: {'; '.join(changed)}; {workdir.work} "
            "holds work on the old contents: delete it and rerun once the input is final"
        )
    summary: dict = {}

    def write_summary_first(metadata: dict) -> None:
        # Before metadata.json (the commit point): a complete dataset always has its summary.
        hook("finish", 0)
        timings["total_s"] = round(time.perf_counter() - started, 3)
        empty = [p for p, rows in zip(config.input_files, file_rows, strict=True) if rows == 0]
        summary.update(write_summary(config, workdir, metadata, timings, peak_memory_mb(), empty))
        hook("finish", 1)

    write_dataset_metadata(
        config,
        workdir,
        cardinalities=cardinalities,
        cat_dtypes=[categorical_dtype(c).name for c in cardinalities],
        split_rows=split_rows,
        log=log,
        lengths=lengths,
        column_stats=stats,
        rule=split_rule(list(config.input_files)),
        input_files=inputs,
        before_commit=write_summary_first,
    )
    hook("finish", 2)
    shutil.rmtree(workdir.work)
    return summary
