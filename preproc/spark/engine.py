"""The Spark engine's driver: the passes of ``preproc.pipeline.run``, computed by Spark.

``pipeline.run`` keeps what both engines share (output lock, input checks, the
metadata and summary); this module replaces the worker-process passes:

1. Units are planned from the files (``units.plan_units``); one RDD partition per unit.
2. Pass 1 (parallel): each executor parses its unit with ``count_pass.UnitParser``;
   the accepted rows stay cached in Spark (memory, spilling to disk). The driver
   collects per unit its line, row and reject counts and its multi-hot list lengths
   (which set the hotness, ``multi_hot``), then the rejected lines of the units that
   have some, one unit at a time and in unit order, into ``rejects.tsv``.
3. Vocabularies (parallel): per-unit counts are shuffled by table (whole tables
   per partition), merged and turned into a vocabulary; the driver collects the
   vocabularies (the only whole-table data it holds) and broadcasts the lookups.
4. Pass 2 (parallel): ids, splits and shuffle buckets with
   ``transform_pass.unit_outputs``; records are shuffled to output partitions
   (one per training bucket, then ordered row ranges of bounded size) and a bucket
   is permuted with ``assemble.permute_bucket``.
5. The driver fetches the output partitions in file order (``toLocalIterator``:
   one partition in memory at a time) and appends them to the split files.

Line numbers in ``rejects.tsv`` are exact: a unit is a byte range of one file
whose lines the executor counts, and the driver adds the line counts of the
file's earlier units, as the local engine does. A run is not resumable (Spark
retries failed tasks itself); a rerun starts over and writes the same bytes.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import uuid

import numpy as np
from tqdm import tqdm

from models.data.feature_spec import SPLITS, categorical_dtype
from preproc import pipeline
from preproc.assemble import column_files, record_columns
from preproc.config import PreprocConfig
from preproc.count_pass import UnitSummary
from preproc.multi_hot import ListLengths
from preproc.pipeline import Engine, PassesResult, check_rows_accepted, reject_log
from preproc.rejects import RejectLog
from preproc.row_format import RowFormat
from preproc.spark import tasks
from preproc.spark.failures import spark_failure
from preproc.spark.session import check_master, spark_context
from preproc.units import Unit, plan_units
from preproc.vocab_pass import save_table
from preproc.workdir import WorkDir


def _say(message: str) -> None:
    print(f"[spark] {message}", file=sys.stderr, flush=True)


def _reject_log(
    sc, config: PreprocConfig, workdir: WorkDir, units: list[Unit], parsed, totals: list
) -> RejectLog:
    """``rejects.tsv`` in unit order; only units with rejects send their lines."""
    summaries = parsed.filter(tasks.is_result).map(tasks.unit_summary)
    log = reject_log(config, workdir)
    completed = False
    try:
        for unit, total in zip(units, totals, strict=True):
            if total.rejected:
                (summary,) = sc.runJob(summaries, list, [total.unit])
            else:
                empty = np.zeros(0, np.int64), np.zeros(0, np.uint8)
                summary = UnitSummary(total.unit, total.lines, total.rows, *empty, [])
            log.add(unit, summary)
        completed = True
    finally:
        log.close(completed)
    return log


def _vocabularies(sc, parsed, config: PreprocConfig, workdir: WorkDir) -> list[tuple]:
    """Per table (sorted values, ids) for the lookups and its statistics; writes vocab/."""
    num_tables = config.row_format.num_tables
    results = (
        parsed.filter(tasks.is_result)
        .flatMap(tasks.table_counts)
        # Tables are spread over at most one partition per core: a task per table
        # would cost more than the merge of a small table.
        .repartitionAndSortWithinPartitions(min(num_tables, sc.defaultParallelism))
        .mapPartitions(
            functools.partial(tasks.table_vocabularies, thresholds=config.frequency_thresholds)
        )
        .collect()
    )
    results.sort(key=lambda r: r[0])
    if [r[0] for r in results] != list(range(num_tables)):
        raise RuntimeError(f"vocabularies of tables {[r[0] for r in results]} came back")
    for table, vocab, sorted_values, sorted_ids, stats in results:
        save_table(workdir, table, vocab, sorted_values, sorted_ids, stats)
    return results


class _SplitFiles:
    """The split files, appended to in file order under ``.tmp`` names."""

    def __init__(
        self, workdir: WorkDir, cat_dtypes: tuple[str, ...], row_format: RowFormat
    ) -> None:
        self.workdir, self.cat_dtypes, self.row_format = workdir, cat_dtypes, row_format
        self.rows = dict.fromkeys(SPLITS, 0)
        self.files = {}
        for split in SPLITS:
            os.makedirs(os.path.join(workdir.root, split), exist_ok=True)
            self.files[split] = [
                open(workdir.split_file(split, name) + ".tmp", "wb")  # noqa: SIM115
                for name, *_ in column_files(cat_dtypes, row_format)
            ]

    def write(self, split: str, records: np.ndarray) -> None:
        columns = record_columns(records, self.cat_dtypes, self.row_format)
        for f, data in zip(self.files[split], columns, strict=True):
            f.write(data)
        self.rows[split] += records.size

    def close(self, expected: dict[str, int] | None) -> None:
        """Renames the files into place when ``expected`` rows were written, else drops them."""
        for files in self.files.values():
            for f in files:
                f.close()
        if expected is not None and self.rows != expected:
            raise RuntimeError(f"rows written per split {self.rows}, expected {expected}")
        for split in SPLITS:
            for name, *_ in column_files(self.cat_dtypes, self.row_format):
                path = self.workdir.split_file(split, name)
                if expected is None:
                    os.remove(path + ".tmp")
                else:
                    os.replace(path + ".tmp", path)


def _write_splits(
    sc, parsed, plan: tasks.OutputPlan, lookups: list, workdir: WorkDir, split_rows: dict
) -> float:
    """Pass 2 and the split files; returns when the first output partition arrived
    (the end of the parallel transform, which that first fetch waits for)."""
    broadcast = sc.broadcast(lookups)
    first_arrival = None
    outputs = (
        parsed.mapPartitionsWithIndex(
            functools.partial(
                tasks.transform_unit, plan=plan, lookups_key=uuid.uuid4().hex, lookups=broadcast
            )
        )
        .repartitionAndSortWithinPartitions(plan.total_partitions, tasks.output_partition)
        .mapPartitionsWithIndex(functools.partial(tasks.finish_partition, plan=plan))
    )
    files = _SplitFiles(workdir, plan.cat_dtypes, plan.row_format)
    completed = False
    try:
        total = sum(split_rows.values())
        with tqdm(total=total, desc="writing splits", unit="rows", file=sys.stderr) as bar:
            for partition, records in outputs.toLocalIterator(prefetchPartitions=True):
                first_arrival = first_arrival or time.perf_counter()
                files.write(plan.split_of(partition), records)
                bar.update(records.size)
        completed = True
    finally:
        files.close(split_rows if completed else None)
        broadcast.destroy()
    return first_arrival or time.perf_counter()


def _step(timings: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    timings[name] = round(now - since, 3)
    return now


def _spark_passes(sc, config: PreprocConfig, workdir: WorkDir, timings: dict) -> PassesResult:
    units = plan_units(list(config.input_files), config.unit_bytes)
    started = time.perf_counter()
    if not units:  # only empty files: nothing for Spark to do
        log = reject_log(config, workdir)
        log.close(True)
        check_rows_accepted(config, log)
    from pyspark import StorageLevel

    parse = functools.partial(
        tasks.parse_units,
        labeled=config.labeled,
        numerical_transform=config.numerical_transform,
        row_format=config.row_format,
    )
    parsed = sc.parallelize(units, len(units)).mapPartitionsWithIndex(parse)
    parsed.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        _say(f"pass 1/2: parse and count {len(units)} units")
        totals = parsed.filter(tasks.is_result).map(tasks.unit_totals).collect()
        log = _reject_log(sc, config, workdir, units, parsed, totals)
        check_rows_accepted(config, log)
        lengths = ListLengths.empty(config.row_format.num_tables)
        for total in totals:
            lengths.add(total.truncated, total.longest)
        row_format = lengths.row_format(config.row_format)  # multi-hot tables at their hotness
        started = _step(timings, "pass1_count_s", started)

        _say("vocabularies")
        vocabularies = _vocabularies(sc, parsed, config, workdir)
        stats = [v[4] for v in vocabularies]
        cardinalities = [s["vocab_size"] + 1 for s in stats]
        cat_dtypes = tuple(categorical_dtype(c).name for c in cardinalities)
        started = _step(timings, "vocabulary_s", started)

        unit_rows = [total.rows for total in totals]
        ranges, split_rows, num_buckets = pipeline.plan_split_rows(config, units, unit_rows)
        plan = tasks.plan_outputs(
            ranges,
            num_buckets,
            config.shuffle_bucket_rows,
            cat_dtypes,
            config.seed,
            row_format,
        )
        lookups = [(v[2], v[3]) for v in vocabularies]
        del vocabularies
        _say(f"pass 2/2: transform into {plan.total_partitions} output partitions")
        transformed = _write_splits(sc, parsed, plan, lookups, workdir, split_rows)
        _step(timings, "pass2_transform_s", started)
        _step(timings, "assembly_s", transformed)
    finally:
        parsed.unpersist()
    file_rows = [0] * len(config.input_files)
    for unit, rows in zip(units, unit_rows, strict=True):
        file_rows[unit.file_index] += rows
    return log, stats, cardinalities, split_rows, file_rows, lengths


def spark_engine(master: str | None) -> Engine:
    """The passes of ``pipeline.run`` on Spark (``master`` None: spark-submit's)."""

    def passes(config: PreprocConfig, workdir: WorkDir, timings: dict) -> PassesResult:
        python = None
        try:
            with spark_context(master) as sc:
                python = sc.pythonExec
                return _spark_passes(sc, config, workdir, timings)
        except Exception as exc:
            failure = spark_failure(exc, python)
            if failure is None:
                raise
            # Spark's progress bar stays on an unfinished line when a job fails: end it,
            # so that the error is a line of its own.
            print(file=sys.stderr, flush=True)
            raise ValueError(f"the Spark job failed: {failure}") from exc

    return passes


def run(config: PreprocConfig, master: str | None = None) -> dict:
    """``pipeline.run`` with the Spark engine: same checks, lock, metadata and summary.

    Args:
        config: the same options as the local engine; ``num_workers`` only sets the
            default master ``local[num_workers]`` (``session.default_master``).
        master: Spark master URL; None keeps spark-submit's (or reuses an active context).

    Returns:
        The run summary, or the metadata when the dataset was already complete.
    """
    check_master(master)
    return pipeline.run(config, engine=spark_engine(master))
