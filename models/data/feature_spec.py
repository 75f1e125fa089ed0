"""The dataset contract: file names, dtypes and the feature spec of a binary dataset.

This module is the only definition of the on-disk format (DEVELOPERS.md,
"Binary dataset format"). The preprocessing writer, the readers, the
inspector, the generators and the benchmarks take every file name, dtype,
cardinality and row count from here. It imports numpy and yaml only, so
``preproc`` workers can import it without TensorFlow.

``feature_spec.yaml`` follows the layout of NVIDIA's DLRM_and_DCNv2:

- ``feature_spec``: per feature its ``dtype``, and for categorical features
  ``cardinality`` (rows of the embedding table, id 0 included) and
  ``hotness`` (ids per row; 1 for single-valued features);
- ``channel_spec``: the feature names of the ``label``, ``numerical`` and
  ``categorical`` channels, in model order;
- ``source_spec``: per split a list of chunks ``{type: split_binary,
  features: [...], files: [path relative to the dataset root]}``;
- ``metadata``: free-form; ours records ``format_version`` and ``rows`` per
  split (a spec without ``rows`` gets them from the size of the label file).

Multi-hot features (``hotness`` > 1) are stored as NVIDIA stores them: a fixed
number of ids per row, ``cat_<i>.bin`` holding ``rows x hotness`` ids row-major
in the feature's dtype. A row with fewer values is padded at its end with
``PAD_ID`` (-1, outside every table; id 0 remains the id of missing and rare
values and has an embedding row). Readers pool the ids of a row that are not
``PAD_ID``; a row holding only ``PAD_ID`` (an empty list) pools to zeros.
A multi-hot feature may set ``combiner`` (``sum`` or ``mean``, our extension):
how its vectors are pooled; without it the trainer's ``--multi_hot_combiner``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from models.data.spec_checks import parse_sections, validate_spec
from models.data.spec_types import (  # noqa: F401 (re-exported: the contract's names)
    CATEGORICAL_CHANNEL,
    CATEGORICAL_DTYPES,
    CHANNELS,
    COMBINERS,
    LABEL_CHANNEL,
    LABEL_DTYPE,
    NUMERICAL_CHANNEL,
    NUMERICAL_DTYPE,
    SPLIT_BINARY,
    Chunk,
    DatasetError,
    Feature,
)

FORMAT_VERSION = 1
FEATURE_SPEC_FILE = "feature_spec.yaml"
METADATA_FILE = "metadata.json"
MODEL_SIZE_FILE = "model_size.json"
SPLITS = ("train", "test", "validation")

LABEL_FILE = "label.bin"
NUMERICAL_FILE = "numerical.bin"
# Padding of a multi-hot row shorter than its feature's hotness (module docstring).
PAD_ID = -1
# NVIDIA's model_size.json names the Criteo TSV columns: categoricals are _c14.._c39.
_MODEL_SIZE_FIRST_COLUMN = 14


def categorical_file(table: int) -> str:
    """Name of the file holding the ids of categorical feature ``table``."""
    return f"cat_{table}.bin"


def vocab_file(table: int) -> str:
    """Path, relative to the dataset root, of table ``table``'s vocabulary."""
    return f"vocab/cat_{table}.npy"


def split_dir(root: str | Path, split: str) -> Path:
    """Directory of one split of the dataset rooted at ``root``."""
    return Path(root) / split


def categorical_dtype(table_rows: int) -> np.dtype:
    """Smallest of int8/int16/int32 whose maximum exceeds ``table_rows``.

    Raises:
        ValueError: If ``table_rows`` is not positive or does not fit in int32.
    """
    if table_rows < 1:
        raise ValueError(f"a table needs at least 1 row, got {table_rows}")
    for dtype in CATEGORICAL_DTYPES:
        if table_rows < np.iinfo(dtype).max:
            return dtype
    raise ValueError(
        f"table of {table_rows} rows does not fit the int32 id format "
        f"(max {np.iinfo(np.int32).max - 1} rows)"
    )


class FeatureNames(NamedTuple):
    """Feature names of each channel (``default_names`` gives ours: label, num_i, cat_i)."""

    label: str
    numerical: tuple[str, ...]
    categorical: tuple[str, ...]


def default_names(num_numerical: int, num_categorical: int) -> FeatureNames:
    return FeatureNames(
        "label",
        tuple(f"num_{i}" for i in range(num_numerical)),
        tuple(f"cat_{t}" for t in range(num_categorical)),
    )


class Column(NamedTuple):
    """One file of a split: its name, dtype and values per row."""

    file: str
    dtype: np.dtype
    width: int
    features: tuple[str, ...]


def split_columns(
    num_numerical: int,
    categorical_dtypes: Sequence[Any],
    hotness: Sequence[int] | None = None,
    names: FeatureNames | None = None,
) -> list[Column]:
    """The files of a split in our layout: label, numerical (if any), one per table.

    ``hotness``: ids per row of each table (1 each by default); ``names``: the
    features' names (``default_names`` by default).
    """
    hotness = list(hotness) if hotness is not None else [1] * len(categorical_dtypes)
    names = names or default_names(num_numerical, len(categorical_dtypes))
    columns = [Column(LABEL_FILE, LABEL_DTYPE, 1, (names.label,))]
    if num_numerical:
        columns.append(Column(NUMERICAL_FILE, NUMERICAL_DTYPE, num_numerical, names.numerical))
    columns += [
        Column(categorical_file(t), np.dtype(d).newbyteorder("<"), h, (name,))
        for t, (d, h, name) in enumerate(
            zip(categorical_dtypes, hotness, names.categorical, strict=True)
        )
    ]
    return columns


class SplitFiles(NamedTuple):
    """Absolute paths of one split's files (``numerical`` is None without numericals)."""

    label: Path
    numerical: Path | None
    categorical: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """A validated feature spec; build with ``default`` or ``from_dict``/``read``.

    Attributes:
        features: Every feature by name.
        channels: Feature names of each channel in model order.
        sources: Chunks of each split.
        metadata: The free-form ``metadata`` section.
    """

    features: Mapping[str, Feature]
    channels: Mapping[str, tuple[str, ...]]
    sources: Mapping[str, tuple[Chunk, ...]]
    metadata: Mapping[str, Any]

    @classmethod
    def default(
        cls,
        num_numerical: int,
        cardinalities: Sequence[int],
        rows: Mapping[str, int] | None = None,
        categorical_dtypes: Sequence[Any] | None = None,
        splits: Sequence[str] = SPLITS,
        hotness: Sequence[int] | None = None,
        names: FeatureNames | None = None,
    ) -> FeatureSpec:
        """Our layout: ``<split>/label.bin``, ``numerical.bin``, ``cat_<i>.bin``.

        Args:
            num_numerical: Numerical features (0 allowed: no numerical file).
            cardinalities: Rows of each table, id 0 included.
            rows: Rows per split, recorded in ``metadata``; its keys are the splits.
            categorical_dtypes: On-disk dtypes; by default the smallest that fits.
            splits: The splits when ``rows`` is not given.
            hotness: Ids per row of each table (multi-hot > 1); 1 each by default.
            names: Feature names per channel; ``default_names`` by default.
        """
        if categorical_dtypes is None:
            categorical_dtypes = [categorical_dtype(int(n)) for n in cardinalities]
        names = names or default_names(num_numerical, len(cardinalities))
        columns = split_columns(num_numerical, categorical_dtypes, hotness, names)
        features = {names.label: Feature(names.label, LABEL_DTYPE)}
        features |= {n: Feature(n, NUMERICAL_DTYPE) for n in names.numerical}
        cat_columns = columns[2 if num_numerical else 1 :]
        for n, column in zip(cardinalities, cat_columns, strict=True):
            name = column.features[0]
            features[name] = Feature(name, column.dtype, int(n), column.width)
        channels = {
            LABEL_CHANNEL: (names.label,),
            NUMERICAL_CHANNEL: tuple(names.numerical),
            CATEGORICAL_CHANNEL: tuple(names.categorical),
        }
        split_names = list(rows) if rows is not None else list(splits)
        sources = {
            split: tuple(Chunk(c.features, f"{split}/{c.file}") for c in columns)
            for split in split_names
        }
        metadata: dict[str, Any] = {"format_version": FORMAT_VERSION}
        if rows is not None:
            metadata["rows"] = {split: int(n) for split, n in rows.items()}
        spec = cls(features, channels, sources, metadata)
        spec.validate("default feature spec")
        return spec

    # ---- channels -------------------------------------------------------------------------

    @property
    def label(self) -> Feature:
        return self.features[self.channels[LABEL_CHANNEL][0]]

    @property
    def numerical(self) -> tuple[Feature, ...]:
        return tuple(self.features[n] for n in self.channels[NUMERICAL_CHANNEL])

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(self.features[n] for n in self.channels[CATEGORICAL_CHANNEL])

    @property
    def num_numerical(self) -> int:
        return len(self.channels[NUMERICAL_CHANNEL])

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(int(f.cardinality) for f in self.categorical)  # type: ignore[arg-type]

    @property
    def categorical_dtypes(self) -> tuple[np.dtype, ...]:
        return tuple(f.dtype for f in self.categorical)

    @property
    def hotness(self) -> tuple[int, ...]:
        return tuple(f.hotness for f in self.categorical)

    @property
    def combiners(self) -> tuple[str | None, ...]:
        """Each categorical feature's ``combiner`` (None where the spec sets none)."""
        return tuple(f.combiner for f in self.categorical)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sources)

    @property
    def rows(self) -> dict[str, int] | None:
        """Rows per split recorded in ``metadata`` (None: derive from file sizes)."""
        rows = self.metadata.get("rows")
        return dict(rows) if rows is not None else None

    # ---- files ----------------------------------------------------------------------------

    def chunk_of(self, split: str) -> dict[str, Chunk]:
        """Feature name -> the chunk of ``split`` that stores it."""
        return {name: chunk for chunk in self.sources[split] for name in chunk.features}

    def split_files(self, root: str | Path, split: str) -> SplitFiles:
        chunks = self.chunk_of(split)
        root = Path(root)
        numerical = root / chunks[self.numerical[0].name].file if self.numerical else None
        return SplitFiles(
            root / chunks[self.label.name].file,
            numerical,
            tuple(root / chunks[f.name].file for f in self.categorical),
        )

    def expected_sizes(self, root: str | Path, split: str, rows: int) -> dict[Path, int]:
        """Expected bytes of every file of ``split`` holding ``rows`` rows."""
        sizes = {}
        for chunk in self.sources[split]:
            row_bytes = sum(
                self.features[n].dtype.itemsize * self.features[n].hotness for n in chunk.features
            )
            sizes[Path(root) / chunk.file] = rows * row_bytes
        return sizes

    def derive_rows(self, root: str | Path, split: str) -> int | None:
        """Rows of ``split`` from the size of its label file (None if it is missing)."""
        path = self.split_files(root, split).label
        return path.stat().st_size // LABEL_DTYPE.itemsize if path.is_file() else None

    def check_files(self, root: str | Path, split: str, rows: int) -> list[str]:
        """Problems (missing file, wrong size) of ``split``'s files, each naming the file."""
        problems = []
        for path, expected in self.expected_sizes(root, split, rows).items():
            if not path.is_file():
                problems.append(f"{path}: missing (expected {expected} bytes)")
            elif (actual := path.stat().st_size) != expected:
                problems.append(
                    f"{path}: expected {expected} bytes for {rows} rows, got {actual} bytes"
                )
        return problems

    # ---- serialization --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        features = {}
        for name, f in self.features.items():
            entry: dict[str, Any] = {"dtype": f.dtype.name}
            if f.cardinality is not None:
                entry["cardinality"] = int(f.cardinality)
                entry["hotness"] = int(f.hotness)
            if f.combiner is not None:
                entry["combiner"] = f.combiner
            features[name] = entry
        return {
            "metadata": dict(self.metadata),
            "feature_spec": features,
            "channel_spec": {c: list(names) for c, names in self.channels.items()},
            "source_spec": {
                split: [
                    {"type": SPLIT_BINARY, "features": list(c.features), "files": [c.file]}
                    for c in chunks
                ]
                for split, chunks in self.sources.items()
            },
        }

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> FeatureSpec:
        """Parses and validates a spec; ``where`` (the file) prefixes every error."""
        spec = cls(*parse_sections(raw, where))
        spec.validate(where)
        return spec

    def validate(self, where: str) -> None:
        """Checks the model's constraints on channels, dtypes and chunks.

        Raises:
            DatasetError: Naming ``where`` and the offending feature or chunk.
        """
        validate_spec(self.features, self.channels, self.sources, self.metadata, where)


def read_feature_spec(root: str | Path) -> FeatureSpec:
    """Reads ``<root>/feature_spec.yaml``."""
    path = Path(root) / FEATURE_SPEC_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DatasetError(f"{path}{line}: not valid YAML ({error})") from error
    return FeatureSpec.from_dict(raw, str(path))


def write_feature_spec(root: str | Path, spec: FeatureSpec) -> Path:
    """Writes ``<root>/feature_spec.yaml`` atomically (temporary file, then rename)."""
    path = Path(root) / FEATURE_SPEC_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(spec.dump())
    os.replace(tmp, path)
    return path


def model_size(cardinalities: Sequence[int]) -> dict[str, int]:
    """NVIDIA's ``model_size.json``: per table its largest id (rows - 1)."""
    return {f"_c{_MODEL_SIZE_FIRST_COLUMN + t}": int(c) - 1 for t, c in enumerate(cardinalities)}


def metadata_json(spec: FeatureSpec, rows: Mapping[str, int], **extra: Any) -> dict[str, Any]:
    """``metadata.json`` (format version 1): the format keys first, then ``extra``."""
    return {
        "format_version": FORMAT_VERSION,
        "num_numerical_features": spec.num_numerical,
        "num_categorical_features": len(spec.categorical),
        "cardinalities": list(spec.cardinalities),
        "categorical_dtypes": [d.name for d in spec.categorical_dtypes],
        "rows": {split: int(n) for split, n in rows.items()},
        **extra,
    }
