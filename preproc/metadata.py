"""The dataset's metadata files (through the contract) and the run summary."""

from __future__ import annotations

import resource
from collections.abc import Callable

from models.data import feature_spec as fs
from preproc.config import PreprocConfig
from preproc.multi_hot import ListLengths, metadata_entries, summary_lines
from preproc.rejects import RejectLog
from preproc.workdir import WorkDir, save_json

SUMMARY_FILE = "preproc_summary.json"


def write_dataset_metadata(
    config: PreprocConfig,
    workdir: WorkDir,
    *,
    cardinalities: list[int],
    cat_dtypes: list[str],
    split_rows: dict[str, int],
    log: RejectLog,
    lengths: ListLengths,
    column_stats: list[dict],
    rule: str,
    input_files: list[dict],
    before_commit: Callable[[dict], None] = lambda metadata: None,
) -> dict:
    """Writes ``model_size.json``, ``feature_spec.yaml``, then ``metadata.json`` (its
    presence marks a complete dataset). Holds nothing that depends on timing or the
    worker count. ``lengths``: the multi-hot list lengths pass 1 measured, which set
    the hotness of the tables (``multi_hot``).

    ``input_files`` are the inputs' path and identity (``preproc.inputs.identity``)
    taken when the run started; ``before_commit(metadata)`` runs just before
    ``metadata.json`` is written, so what it writes exists in every complete dataset."""
    row_format = lengths.row_format(config.row_format)
    if len(cardinalities) != row_format.num_tables:
        raise ValueError(
            f"{row_format.num_tables} cardinalities expected, got {len(cardinalities)}"
        )
    rows_written = sum(split_rows.values())
    if log.lines_read != rows_written + log.rejected:
        raise RuntimeError(
            f"row accounting broken: read {log.lines_read} != written {rows_written} "
            f"+ rejected {log.rejected}"
        )
    spec = fs.FeatureSpec.default(
        row_format.num_numerical,
        cardinalities,
        split_rows,
        cat_dtypes,
        hotness=row_format.hotness,
        names=row_format.names,
    )
    extra = {}
    if config.schema is not None:
        extra = {"schema": config.schema.to_dict()}
        extra |= metadata_entries(config.row_format, lengths)
    metadata = fs.metadata_json(
        spec,
        split_rows,
        numerical_transform=config.numerical_transform,
        frequency_thresholds=list(config.frequency_thresholds),
        seed=config.seed,
        shuffled=config.shuffle,
        labeled=config.labeled,
        split_rule=rule,
        test_fraction=config.test_fraction if rule == "fraction" else None,
        input_files=input_files,
        rows_read=log.lines_read,
        rows_written=rows_written,
        rows_rejected=dict(log.counts),
        distinct_values=[s["distinct_values"] for s in column_stats],
        **extra,
    )
    save_json(workdir.output(fs.MODEL_SIZE_FILE), fs.model_size(cardinalities))
    fs.write_feature_spec(workdir.root, spec)
    before_commit(metadata)
    save_json(workdir.output(fs.METADATA_FILE), metadata)
    return metadata


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest worker, in MiB."""
    kib = 1024.0
    return {
        "coordinator": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib, 1),
        "largest_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib, 1),
    }


def write_summary(
    config: PreprocConfig,
    workdir: WorkDir,
    metadata: dict,
    timings: dict[str, float],
    peak_mb: dict[str, float],
    inputs_without_rows: list[str],
) -> dict:
    """Prints and saves the run summary (timings vary: kept out of metadata.json).

    ``inputs_without_rows``: input files that gave no row (empty, or all rejected)."""
    total_s = max(timings.get("total_s", 0.0), 1e-9)
    summary = {
        "rows_read": metadata["rows_read"],
        "rows_written": metadata["rows_written"],
        "rows_per_split": metadata["rows"],
        "rows_rejected": metadata["rows_rejected"],
        **{
            k: metadata[k]
            for k in ("multi_hot_truncated_rows", "multi_hot_hotness")
            if k in metadata
        },
        "inputs_without_rows": inputs_without_rows,
        "num_workers": config.num_workers,
        "seconds": timings,
        "rows_per_second": round(metadata["rows_read"] / total_s, 1),
        "peak_memory_mb": peak_mb,
    }
    save_json(workdir.output(SUMMARY_FILE), summary)
    rejected = sum(metadata["rows_rejected"].values())
    reasons = ", ".join(f"{k} {v}" for k, v in metadata["rows_rejected"].items() if v) or "none"
    print(
        f"rows read {metadata['rows_read']:,} = written {metadata['rows_written']:,} "
        f"+ rejected {rejected:,} ({reasons})\n"
        f"rows per split: "
        + ", ".join(f"{k} {v:,}" for k, v in metadata["rows"].items())
        + "\ntime: "
        + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
        + f"\nthroughput: {summary['rows_per_second']:,.0f} rows/s with "
        f"{config.num_workers} worker(s); peak memory: coordinator "
        f"{peak_mb['coordinator']:.0f} MiB, largest worker {peak_mb['largest_worker']:.0f} MiB"
    )
    for line in summary_lines(metadata):
        print(line)
    if inputs_without_rows:
        print(f"warning: input files that gave no rows: {', '.join(inputs_without_rows)}")
    return summary
