"""Dataset metadata: loading any supported layout, validating the files.

Three layouts are read (DEVELOPERS.md, "Binary dataset format"); the format
itself is defined in ``models/data/feature_spec.py``:

- ``feature_spec.yaml`` (ours since it was added, or NVIDIA DLRM_and_DCNv2's
  as is), next to ``metadata.json`` when ``preproc`` wrote the dataset;
- ``metadata.json`` alone (datasets written before ``feature_spec.yaml``);
- NVIDIA's ``model_size.json`` alone (largest id per table); the rest is
  derived from the dtype rule and the file sizes.

Every file of every split is checked against the row counts and dtypes
before training starts, so a truncated copy fails here with the file name and
byte counts instead of as a short read hours into a run.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import feature_spec as fs
from models.data.feature_spec import DatasetError, FeatureSpec

_REQUIRED_KEYS = (
    "format_version",
    "num_numerical_features",
    "num_categorical_features",
    "cardinalities",
    "categorical_dtypes",
    "rows",
)
_NVIDIA_KEY = re.compile(r"^_c(\d+)$")


__all__ = ["DatasetError", "DatasetMetadata", "check_cardinalities", "load_metadata"]


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What the input pipeline needs to know about a binary dataset.

    Attributes:
        root: Dataset directory.
        source: ``"ours"`` (``metadata.json``, with or without
            ``feature_spec.yaml``), ``"feature_spec"`` (``feature_spec.yaml``
            alone, e.g. NVIDIA DLRM_and_DCNv2's) or ``"nvidia"``
            (``model_size.json`` only).
        cardinalities: Rows of each embedding table, id 0 included.
        categorical_dtypes: On-disk dtype of each categorical feature.
        num_numerical_features: Numerical features per row.
        rows: Rows per split present in the dataset.
        raw: The parsed metadata file as written (``metadata.json``, else
            ``feature_spec.yaml``, else ``model_size.json``).
        spec: The feature spec: every file, dtype and cardinality.
    """

    root: Path
    source: str
    cardinalities: tuple[int, ...]
    categorical_dtypes: tuple[np.dtype, ...]
    num_numerical_features: int
    rows: Mapping[str, int]
    raw: Mapping[str, Any]
    spec: FeatureSpec

    @classmethod
    def from_spec(
        cls, root: Path, source: str, spec: FeatureSpec, rows: Mapping[str, int], raw: Any
    ) -> DatasetMetadata:
        return cls(
            root=root,
            source=source,
            cardinalities=spec.cardinalities,
            categorical_dtypes=spec.categorical_dtypes,
            num_numerical_features=spec.num_numerical,
            rows=dict(rows),
            raw=raw,
            spec=spec,
        )

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
        return self.spec.expected_sizes(self.root, split, self.split_rows(split))

    def validate_split(self, split: str) -> None:
        """Checks that every file of ``split`` exists and has the expected size.

        Raises:
            DatasetError: Listing every missing or wrongly sized file with the
                expected and actual bytes.
        """
        rows = self.split_rows(split)
        if rows == 0 and not self.spec.split_files(self.root, split).label.parent.exists():
            return
        problems = self.spec.check_files(self.root, split, rows)
        if problems:
            raise DatasetError(
                f"split {split!r} of {self.root} does not match its metadata "
                f"({self.source}):\n  " + "\n  ".join(problems)
            )


def load_metadata(root: str | Path, validate: bool = True) -> DatasetMetadata:
    """Loads the metadata of the dataset at ``root`` (any supported layout).

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
    if (root / fs.FEATURE_SPEC_FILE).is_file():
        metadata = _load_feature_spec(root)
    elif (root / fs.METADATA_FILE).is_file():
        metadata = _load_ours(root)
    elif (root / fs.MODEL_SIZE_FILE).is_file():
        metadata = _load_nvidia(root)
    else:
        raise DatasetError(
            f"{root} holds none of {fs.FEATURE_SPEC_FILE}, {fs.METADATA_FILE}, "
            f"{fs.MODEL_SIZE_FILE}; is it a dataset written by `python -m preproc`?"
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


def _load_feature_spec(root: Path) -> DatasetMetadata:
    """``feature_spec.yaml``, cross-checked against ``metadata.json`` when present."""
    path = root / fs.FEATURE_SPEC_FILE
    spec = fs.read_feature_spec(root)
    if (root / fs.METADATA_FILE).is_file():
        ours = _load_ours(root)
        _check_same(spec, ours, path)
        return DatasetMetadata.from_spec(root, "ours", spec, ours.rows, ours.raw)
    rows = spec.rows
    if rows is None:
        rows = {}
        for split in spec.splits:
            derived = spec.derive_rows(root, split)
            if derived is None:
                label = spec.split_files(root, split).label
                raise DatasetError(f"{path}: split {split!r}: {label} is missing")
            rows[split] = derived
    return DatasetMetadata.from_spec(root, "feature_spec", spec, rows, spec.to_dict())


def _check_same(spec: FeatureSpec, ours: DatasetMetadata, path: Path) -> None:
    """``feature_spec.yaml`` and ``metadata.json`` must describe the same data."""
    pairs = {
        "cardinalities": (spec.cardinalities, ours.cardinalities),
        "categorical dtypes": (spec.categorical_dtypes, ours.categorical_dtypes),
        "numerical features": (spec.num_numerical, ours.num_numerical_features),
        "rows": (spec.rows if spec.rows is not None else ours.rows, ours.rows),
    }
    for what, (got, want) in pairs.items():
        if got != want:
            raise DatasetError(
                f"{path}: {what} {got} differ from {ours.root / fs.METADATA_FILE}'s {want}"
            )


def _load_ours(root: Path) -> DatasetMetadata:
    """``metadata.json`` (format version 1), the layout before ``feature_spec.yaml``."""
    path = root / fs.METADATA_FILE
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise DatasetError(f"{path}: missing keys {missing}")
    if raw["format_version"] != fs.FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {raw['format_version']!r} is not supported "
            f"(this reader reads version {fs.FORMAT_VERSION})"
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
    nvidia_path = root / fs.MODEL_SIZE_FILE
    if nvidia_path.is_file():
        nvidia_cardinalities = _nvidia_cardinalities(nvidia_path)
        try:
            check_cardinalities(cardinalities, nvidia_cardinalities, path.name, nvidia_path.name)
        except ValueError as error:
            raise DatasetError(f"{root}: {error}") from error
    spec = FeatureSpec.default(num_numerical, cardinalities, rows, dtypes)
    return DatasetMetadata.from_spec(root, "ours", spec, rows, raw)


def _load_nvidia(root: Path) -> DatasetMetadata:
    path = root / fs.MODEL_SIZE_FILE
    cardinalities = _nvidia_cardinalities(path)
    try:
        dtypes = [fs.categorical_dtype(n) for n in cardinalities]
    except ValueError as error:
        raise DatasetError(f"{path}: {error}") from error
    rows: dict[str, int] = {}
    for split in fs.SPLITS:
        label_path = fs.split_dir(root, split) / fs.LABEL_FILE
        if label_path.is_file():
            rows[split] = label_path.stat().st_size // fs.LABEL_DTYPE.itemsize
    if not rows:
        raise DatasetError(
            f"{root}: no split directory ({', '.join(fs.SPLITS)}) holds a {fs.LABEL_FILE}"
        )
    num_numerical = _derive_num_numerical(root, rows)
    spec = FeatureSpec.default(num_numerical, cardinalities, rows, dtypes)
    return DatasetMetadata.from_spec(root, "nvidia", spec, rows, _read_json(path))


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
    row_bytes = fs.NUMERICAL_DTYPE.itemsize
    for split, n in rows.items():
        path = fs.split_dir(root, split) / fs.NUMERICAL_FILE
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
    allowed = {dtype.name: dtype for dtype in fs.CATEGORICAL_DTYPES}
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
