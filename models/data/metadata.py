"""Dataset metadata: loading, deriving (NVIDIA layout) and validating.

Two layouts are read (DEVELOPERS.md, "Binary dataset format"):

- ours: ``metadata.json`` states cardinalities, dtypes and rows per split;
- NVIDIA's: only ``model_size.json`` (largest id per table); the rest is
  derived from the dtype rule and the file sizes.

Either way every file of every split is checked against the row counts and
dtypes before training starts, so a truncated copy fails here with the file
name and byte counts instead of as a short read hours into a run.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import layout

_REQUIRED_KEYS = (
    "format_version",
    "num_numerical_features",
    "num_categorical_features",
    "cardinalities",
    "categorical_dtypes",
    "rows",
)
_NVIDIA_KEY = re.compile(r"^_c(\d+)$")


class DatasetError(ValueError):
    """A dataset's metadata or files are missing, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What the input pipeline needs to know about a binary dataset.

    Attributes:
        root: Dataset directory.
        source: ``"ours"`` (``metadata.json``) or ``"nvidia"`` (``model_size.json`` only).
        cardinalities: Rows of each embedding table, id 0 included.
        categorical_dtypes: On-disk dtype of each ``cat_i.bin``.
        num_numerical_features: Columns of ``numerical.bin``.
        rows: Rows per split present in the dataset.
        raw: The parsed metadata file as written (``model_size.json`` for NVIDIA).
    """

    root: Path
    source: str
    cardinalities: tuple[int, ...]
    categorical_dtypes: tuple[np.dtype, ...]
    num_numerical_features: int
    rows: Mapping[str, int]
    raw: Mapping[str, Any]

    @property
    def num_tables(self) -> int:
        return len(self.cardinalities)

    def split_rows(self, split: str) -> int:
        """Rows of ``split``; raises DatasetError naming the available splits."""
        if split not in self.rows:
            raise DatasetError(
                f"split {split!r} is not in the dataset at {self.root} "
                f"(available: {', '.join(sorted(self.rows)) or 'none'})"
            )
        return self.rows[split]

    def expected_file_sizes(self, split: str) -> dict[Path, int]:
        """Expected size in bytes of every file of ``split``."""
        rows = self.split_rows(split)
        directory = layout.split_dir(self.root, split)
        sizes = {
            directory / layout.LABEL_FILE: rows * layout.LABEL_DTYPE.itemsize,
            directory / layout.NUMERICAL_FILE: (
                rows * self.num_numerical_features * layout.NUMERICAL_DTYPE.itemsize
            ),
        }
        for table, dtype in enumerate(self.categorical_dtypes):
            sizes[directory / layout.categorical_file(table)] = rows * dtype.itemsize
        return sizes

    def validate_split(self, split: str) -> None:
        """Checks that every file of ``split`` exists and has the expected size.

        Raises:
            DatasetError: Listing every missing or wrongly sized file with the
                expected and actual bytes.
        """
        rows = self.split_rows(split)
        if rows == 0 and not layout.split_dir(self.root, split).exists():
            return
        problems = []
        for path, expected in self.expected_file_sizes(split).items():
            if not path.is_file():
                problems.append(f"{path}: missing (expected {expected} bytes)")
                continue
            actual = path.stat().st_size
            if actual != expected:
                problems.append(
                    f"{path}: expected {expected} bytes for {rows} rows, got {actual} bytes"
                )
        if problems:
            raise DatasetError(
                f"split {split!r} of {self.root} does not match its metadata "
                f"({self.source}):\n  " + "\n  ".join(problems)
            )


def load_metadata(root: str | Path, validate: bool = True) -> DatasetMetadata:
    """Loads the metadata of the dataset at ``root`` (ours or NVIDIA's layout).

    Args:
        root: Dataset directory.
        validate: Check every file of every split against the metadata.

    Raises:
        DatasetError: If the metadata is missing, malformed, or (with
            ``validate``) a file is missing or has the wrong size.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist")
    if (root / layout.METADATA_FILE).is_file():
        metadata = _load_ours(root)
    elif (root / layout.NVIDIA_MODEL_SIZE_FILE).is_file():
        metadata = _load_nvidia(root)
    else:
        raise DatasetError(
            f"{root} holds neither {layout.METADATA_FILE} nor {layout.NVIDIA_MODEL_SIZE_FILE}; "
            "is it a dataset written by `python -m preproc`?"
        )
    if validate:
        for split in metadata.rows:
            metadata.validate_split(split)
    return metadata


def check_cardinalities(
    expected: Sequence[int],
    actual: Sequence[int],
    expected_name: str = "checkpoint",
    actual_name: str = "dataset",
) -> None:
    """Raises ValueError naming the tables whose cardinalities differ.

    Used when a model (checkpoint) is paired with a dataset: an id beyond a
    table's rows would fail or, on some devices, silently read zeros.
    """
    expected, actual = [int(v) for v in expected], [int(v) for v in actual]
    if len(expected) != len(actual):
        raise ValueError(
            f"{expected_name} has {len(expected)} tables, {actual_name} has {len(actual)}"
        )
    differences = [
        f"table {table}: {expected_name} {want} rows, {actual_name} {got} rows"
        for table, (want, got) in enumerate(zip(expected, actual, strict=True))
        if want != got
    ]
    if differences:
        shown = differences[:10]
        more = f"; and {len(differences) - 10} more" if len(differences) > 10 else ""
        raise ValueError(
            f"cardinalities of {len(differences)} tables differ between {expected_name} "
            f"and {actual_name}: " + "; ".join(shown) + more
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error


def _load_ours(root: Path) -> DatasetMetadata:
    path = root / layout.METADATA_FILE
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise DatasetError(f"{path}: missing keys {missing}")
    if raw["format_version"] != layout.FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {raw['format_version']!r} is not supported "
            f"(this reader reads version {layout.FORMAT_VERSION})"
        )
    cardinalities = _positive_ints(raw["cardinalities"], f"{path}: cardinalities")
    if len(cardinalities) != raw["num_categorical_features"]:
        raise DatasetError(
            f"{path}: num_categorical_features is {raw['num_categorical_features']} "
            f"but {len(cardinalities)} cardinalities are given"
        )
    dtypes = _categorical_dtypes(raw["categorical_dtypes"], cardinalities, path)
    num_numerical = raw["num_numerical_features"]
    if not isinstance(num_numerical, int) or num_numerical < 0:
        raise DatasetError(
            f"{path}: num_numerical_features must be an int >= 0, got {num_numerical!r}"
        )
    rows = raw["rows"]
    if not isinstance(rows, dict) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in rows.values()
    ):
        raise DatasetError(f"{path}: rows must map split names to ints >= 0, got {rows!r}")
    nvidia_path = root / layout.NVIDIA_MODEL_SIZE_FILE
    if nvidia_path.is_file():
        nvidia_cardinalities = _nvidia_cardinalities(nvidia_path)
        try:
            check_cardinalities(cardinalities, nvidia_cardinalities, path.name, nvidia_path.name)
        except ValueError as error:
            raise DatasetError(f"{root}: {error}") from error
    return DatasetMetadata(
        root=root,
        source="ours",
        cardinalities=tuple(cardinalities),
        categorical_dtypes=tuple(dtypes),
        num_numerical_features=num_numerical,
        rows=dict(rows),
        raw=raw,
    )


def _load_nvidia(root: Path) -> DatasetMetadata:
    path = root / layout.NVIDIA_MODEL_SIZE_FILE
    cardinalities = _nvidia_cardinalities(path)
    try:
        dtypes = [layout.categorical_dtype(n) for n in cardinalities]
    except ValueError as error:
        raise DatasetError(f"{path}: {error}") from error
    rows: dict[str, int] = {}
    for split in layout.SPLITS:
        label_path = layout.split_dir(root, split) / layout.LABEL_FILE
        if label_path.is_file():
            rows[split] = label_path.stat().st_size // layout.LABEL_DTYPE.itemsize
    if not rows:
        raise DatasetError(
            f"{root}: no split directory ({', '.join(layout.SPLITS)}) holds a {layout.LABEL_FILE}"
        )
    num_numerical = _derive_num_numerical(root, rows)
    return DatasetMetadata(
        root=root,
        source="nvidia",
        cardinalities=tuple(cardinalities),
        categorical_dtypes=tuple(dtypes),
        num_numerical_features=num_numerical,
        rows=rows,
        raw=_read_json(path),
    )


def _nvidia_cardinalities(path: Path) -> list[int]:
    """Table rows from ``model_size.json``: largest id + 1, in column order."""
    raw = _read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{path}: expected a non-empty JSON object")
    columns = []
    for key, value in raw.items():
        match = _NVIDIA_KEY.match(key)
        if match is None:
            raise DatasetError(f"{path}: key {key!r} is not of the form _c<column>")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DatasetError(f"{path}: {key} must be an int >= 0 (largest id), got {value!r}")
        columns.append((int(match.group(1)), value + 1))
    return [rows for _, rows in sorted(columns)]


def _derive_num_numerical(root: Path, rows: Mapping[str, int]) -> int:
    """Columns of ``numerical.bin``, derived from its size in every non-empty split."""
    derived: dict[str, int] = {}
    row_bytes = layout.NUMERICAL_DTYPE.itemsize
    for split, n in rows.items():
        path = layout.split_dir(root, split) / layout.NUMERICAL_FILE
        if n == 0 or not path.is_file():
            continue
        size = path.stat().st_size
        if size % (n * row_bytes):
            raise DatasetError(
                f"{path}: {size} bytes is not a whole number of float16 rows for "
                f"{n} samples (label.bin has {n} rows)"
            )
        derived[split] = size // (n * row_bytes)
    if not derived:
        raise DatasetError(f"{root}: cannot derive the number of numerical features (no rows)")
    if len(set(derived.values())) > 1:
        raise DatasetError(
            f"{root}: splits disagree on the number of numerical features: {derived}"
        )
    return next(iter(derived.values()))


def _positive_ints(values: Any, where: str) -> list[int]:
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise DatasetError(f"{where} must be a list of ints > 0, got {values!r}")
    return values


def _categorical_dtypes(names: Any, cardinalities: Sequence[int], path: Path) -> list[np.dtype]:
    if not isinstance(names, list) or len(names) != len(cardinalities):
        raise DatasetError(
            f"{path}: categorical_dtypes must list {len(cardinalities)} dtypes, got {names!r}"
        )
    allowed = {dtype.name: dtype for dtype in layout.CATEGORICAL_DTYPES}
    dtypes = []
    for table, (name, rows) in enumerate(zip(names, cardinalities, strict=True)):
        if name not in allowed:
            raise DatasetError(
                f"{path}: categorical_dtypes[{table}] is {name!r}, "
                f"expected one of {sorted(allowed)}"
            )
        if np.iinfo(allowed[name]).max < rows - 1:
            raise DatasetError(
                f"{path}: table {table} has {rows} rows but dtype {name} holds ids up to "
                f"{np.iinfo(allowed[name]).max}"
            )
        dtypes.append(allowed[name])
    return dtypes
