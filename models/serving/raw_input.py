"""A dataset's raw rows -> model inputs: what the export needs to know, and the TF module.

``RawInputSpec.from_dataset(root)`` reads everything the raw-input signature
needs from a dataset written by ``python -m preproc``: the row format
(Criteo, or the schema recorded in ``metadata.json``), the numerical
transforms, each table's hotness (from ``feature_spec.yaml``, which records
the hotness the dataset was written with) and the vocabularies
(``vocab/cat_{t}.npy``: value keys, id of ``vocab[k]`` is ``k + 1``).

``RawPreprocessor(spec)`` maps a batch of raw columns (tf.string ``[B]``
each, keyed by ``RawColumn.input``) to ``(numerical float32 [B, N],
categorical int32 [B, C], reject_reason string [B])`` exactly as
``preproc`` maps a row: the layout of the binary dataset's splits, which
the id-input signature takes. All tables' vocabularies are one hash table
keyed by ``table << 32 | value``, so a batch costs one lookup.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from models.data import feature_spec as fs
from models.data.metadata import load_metadata
from models.serving import fields as sf
from models.serving.numerical import ColumnTransforms
from preproc.schema import NUM_CATEGORICAL, NUM_NUMERICAL
from preproc.user_schema import Schema, SchemaError, parse_schema

CRITEO = "criteo"
_VALID_INPUT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_EMPTY_KEY, _DELETED_KEY = -1, -2  # the hash table's reserved keys; real keys are >= 0


class RawInputError(ValueError):
    """A dataset cannot give a raw-input signature (the message names the file and why)."""


@dataclass(frozen=True)
class RawColumn:
    """One raw input column.

    Attributes:
        name: the column's name in the log (Criteo: ``I1``..``I13``, ``C1``..``C26``).
        input: the signature's input key: ``name`` with every character outside
            ``[A-Za-z0-9_]`` replaced by ``_`` (and ``c_`` before a leading digit or ``_``).
        role: ``numerical``, ``categorical`` or ``multi_hot``.
        transform: a numerical column's transform.
        table: a table column's table index.
        hotness: ids per row of its table (1 unless multi-hot).
        separator: a multi-hot column's separator.
        hash_buckets: buckets of a hashed column (None: not hashed).
    """

    name: str
    input: str
    role: str
    transform: str | None = None
    table: int | None = None
    hotness: int = 1
    separator: str | None = None
    hash_buckets: int | None = None


def input_key(name: str) -> str:
    """The signature input key of a column name (TensorFlow accepts only some names)."""
    key = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return key if _VALID_INPUT.match(key) else f"c_{key}"


@dataclass(frozen=True)
class RawInputSpec:
    """What the raw-input signature of one dataset needs.

    Attributes:
        root: the dataset directory it was read from (for messages).
        format: ``criteo``, or the schema's ``csv``/``tsv``.
        columns: the raw input columns, in the log's order (the label left out).
        schema: the schema as ``metadata.json`` records it (None for Criteo).
        labeled: Criteo only: the dataset's rows had a label column.
        vocabularies: per table, the uint32 value keys; ``vocab[k]`` has id ``k + 1``.
    """

    root: str
    format: str
    columns: tuple[RawColumn, ...]
    schema: dict[str, Any] | None
    labeled: bool
    vocabularies: tuple[np.ndarray, ...]

    @property
    def numerical(self) -> tuple[RawColumn, ...]:
        return tuple(c for c in self.columns if c.role == "numerical")

    @property
    def tables(self) -> tuple[RawColumn, ...]:
        return tuple(c for c in self.columns if c.role != "numerical")

    @property
    def hotness(self) -> tuple[int, ...]:
        return tuple(c.hotness for c in self.tables)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(int(v.size) + 1 for v in self.vocabularies)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for ``dlrm_signature.json`` (what a client sends)."""
        columns = []
        for c in self.columns:
            entry: dict[str, Any] = {"name": c.name, "input": c.input, "role": c.role}
            if c.role == "multi_hot":
                entry |= {"separator": c.separator, "hotness": c.hotness}
            if c.hash_buckets:
                entry["hash_buckets"] = c.hash_buckets
            if c.transform:
                entry["transform"] = c.transform
            columns.append(entry)
        described: dict[str, Any] = {"format": self.format, "columns": columns}
        if self.schema is not None:
            described["schema"] = self.schema
        else:
            described["labeled"] = self.labeled
        return described

    @classmethod
    def from_dataset(cls, root: str | Path) -> RawInputSpec:
        """Reads the spec of the dataset at ``root`` (written by ``python -m preproc``).

        Raises:
            RawInputError: ``metadata.json`` or a vocabulary is missing or does not
                match the feature spec.
        """
        root = Path(root)
        metadata_path = root / fs.METADATA_FILE
        if not metadata_path.is_file():
            raise RawInputError(
                f"{metadata_path} is missing: the raw-input signature needs a dataset written "
                "by `python -m preproc` (its metadata and vocab/)"
            )
        record = json.loads(metadata_path.read_text(encoding="utf-8"))
        hotness = load_metadata(root, validate=False).spec.hotness
        if record.get("schema") is None:
            if hotness != (1,) * NUM_CATEGORICAL:
                raise RawInputError(
                    f"{root}: a Criteo dataset has {NUM_CATEGORICAL} single-valued tables, its "
                    f"feature spec gives hotness {list(hotness)}"
                )
            columns = _criteo_columns(record, metadata_path)
            schema, fmt = None, CRITEO
        else:
            schema = _schema(record["schema"], hotness, metadata_path)
            columns = _schema_columns(schema, record)
            fmt = schema.format
        vocabularies = tuple(_vocabulary(root, t) for t in range(len(hotness)))
        spec = cls(
            root=str(root),
            format=fmt,
            columns=columns,
            schema=None if schema is None else schema.to_dict(),
            labeled=bool(record.get("labeled", True)),
            vocabularies=vocabularies,
        )
        spec._check(tuple(int(c) for c in record["cardinalities"]), metadata_path)
        return spec

    def _check(self, cardinalities: tuple[int, ...], where: Path) -> None:
        if self.cardinalities != cardinalities:
            raise RawInputError(
                f"{self.root}/vocab: vocabularies give tables of {list(self.cardinalities)} rows, "
                f"{where} records {list(cardinalities)}"
            )
        inputs = [c.input for c in self.columns]
        clashes = sorted({k for k in inputs if inputs.count(k) > 1})
        if clashes:
            names = [c.name for c in self.columns if c.input in clashes]
            raise RawInputError(f"columns {names} share the signature input names {clashes}")


def raw_input_missing(root: str | Path) -> str | None:
    """Why the dataset at ``root`` cannot give a raw-input signature (a file it lacks), or
    None; reads no vocabulary."""
    root = Path(root)
    metadata_path = root / fs.METADATA_FILE
    if not metadata_path.is_file():
        return f"{metadata_path} is missing (a dataset written by python -m preproc has it)"
    try:
        record = json.loads(metadata_path.read_text(encoding="utf-8"))
        tables = int(record["num_categorical_features"])
    except (ValueError, KeyError, TypeError) as error:
        return f"{metadata_path}: cannot read num_categorical_features ({error})"
    for table in range(tables):
        if not (root / fs.vocab_file(table)).is_file():
            return f"{root / fs.vocab_file(table)} is missing (python -m preproc writes vocab/)"
    return None


def _criteo_columns(record: dict[str, Any], where: Path) -> tuple[RawColumn, ...]:
    transform = record.get("numerical_transform")
    if transform is None:
        raise RawInputError(f"{where} records no numerical_transform")
    numerical = tuple(
        RawColumn(f"I{i + 1}", f"I{i + 1}", "numerical", transform=transform)
        for i in range(NUM_NUMERICAL)
    )
    tables = tuple(
        RawColumn(f"C{t + 1}", f"C{t + 1}", "categorical", table=t) for t in range(NUM_CATEGORICAL)
    )
    return numerical + tables


def _schema(raw: Any, hotness: tuple[int, ...], where: Path) -> Schema:
    """The recorded schema, with each table's hotness as the feature spec records it."""
    try:
        schema = parse_schema(raw, str(where))
    except SchemaError as error:
        raise RawInputError(str(error)) from None
    if len(schema.tables) != len(hotness):
        raise RawInputError(
            f"{where}: the schema has {len(schema.tables)} table columns, the feature spec "
            f"{len(hotness)} tables"
        )
    recorded = iter(hotness)
    columns = []
    for c in schema.columns:
        if c.role in ("categorical", "multi_hot"):
            h = next(recorded)
            if c.role == "categorical" and h != 1:
                raise RawInputError(f"{where}: categorical column {c.name} has hotness {h}")
            c = dataclasses.replace(c, hotness=h)
        columns.append(c)
    return dataclasses.replace(schema, columns=tuple(columns))


def _schema_columns(schema: Schema, record: dict[str, Any]) -> tuple[RawColumn, ...]:
    default = record.get("numerical_transform", "log3")
    columns, table = [], 0
    for c in schema.columns:
        if c.role == "label":
            continue
        if c.role == "numerical":
            columns.append(
                RawColumn(c.name, input_key(c.name), "numerical", transform=c.transform or default)
            )
            continue
        columns.append(
            RawColumn(
                c.name,
                input_key(c.name),
                c.role,
                table=table,
                hotness=c.hotness,
                separator=c.separator,
                hash_buckets=c.hash_buckets,
            )
        )
        table += 1
    return tuple(columns)


def _vocabulary(root: Path, table: int) -> np.ndarray:
    path = root / fs.vocab_file(table)
    if not path.is_file():
        raise RawInputError(
            f"{path} is missing: the raw-input signature maps values to ids with the "
            "vocabularies `python -m preproc` writes under vocab/"
        )
    vocab = np.load(path)
    if vocab.ndim != 1 or vocab.dtype != np.uint32:
        raise RawInputError(f"{path}: expected a 1-D uint32 array, got {vocab.dtype} {vocab.shape}")
    return vocab


class RawPreprocessor(tf.Module):
    """Raw columns -> ``(numerical [B, N] float32, categorical [B, C] int32, reject [B])``.

    ``reject`` is the empty string for a row ``preproc`` accepts, else the reason
    ``preproc`` gives (``bad_integer``, ``bad_categorical``; ``bad_numerical``);
    the other outputs of a rejected row are meaningless.
    """

    def __init__(self, spec: RawInputSpec) -> None:
        super().__init__(name="raw_preprocessor")
        self.spec = spec
        keys = [(np.int64(t) << 32) | v.astype(np.int64) for t, v in enumerate(spec.vocabularies)]
        ids = [np.arange(1, v.size + 1, dtype=np.int64) for v in spec.vocabularies]
        all_keys = np.concatenate(keys or [np.zeros(0, np.int64)])
        self.vocabulary = tf.lookup.experimental.DenseHashTable(
            tf.int64,
            tf.int64,
            default_value=0,  # rare and unseen values share id 0
            empty_key=_EMPTY_KEY,
            deleted_key=_DELETED_KEY,
            initial_num_buckets=_buckets_for(all_keys.size),
        )
        if all_keys.size:
            self.vocabulary.insert(all_keys, np.concatenate(ids))
        self.criteo = spec.format == CRITEO
        self.transforms = ColumnTransforms([c.transform for c in spec.numerical], self.criteo)
        # Per id column (a table's hotness columns in a row): its table, its hash buckets
        # (0: none) and the id of an absent value (0 when missing, padding in a list).
        slots = [(c.table, c.hash_buckets or 0, c.role) for c in spec.tables]
        slots = [s for s, c in zip(slots, spec.tables, strict=True) for _ in range(c.hotness)]
        self.slot_table = np.array([s[0] for s in slots], np.int64) << 32
        self.slot_buckets = np.array([s[1] for s in slots], np.int64)
        self.slot_absent_id = np.array(
            [fs.PAD_ID if s[2] == "multi_hot" else 0 for s in slots], np.int64
        )

    def _ids(self, keys: tf.Tensor, absent: tf.Tensor) -> tf.Tensor:
        """int32 ids [B, C] of value keys [B, C] (already bucketed)."""
        table_keys = tf.bitwise.bitwise_or(keys, self.slot_table)
        ids = tf.reshape(self.vocabulary.lookup(tf.reshape(table_keys, [-1])), tf.shape(keys))
        return tf.cast(tf.where(absent, self.slot_absent_id, ids), tf.int32)

    def __call__(self, columns: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        numerical_fields = [columns[c.input] for c in self.spec.numerical]
        rows = tf.shape(columns[self.spec.columns[0].input])[0]
        if self.criteo:
            ints, int_missing, int_bad = sf.criteo_integers(numerical_fields)
            values, missing, hex_bad = sf.criteo_hex([columns[c.input] for c in self.spec.tables])
            numerical = self.transforms(ints, int_missing)
            categorical = self._ids(values, missing)
            # preproc reports a row's first bad field: the integers come first.
            reject = tf.where(
                tf.reduce_any(int_bad, axis=1),
                "bad_integer",
                tf.where(tf.reduce_any(hex_bad, axis=1), "bad_categorical", ""),
            )
            return numerical, categorical, reject
        if numerical_fields:
            numbers, missing, bad = sf.schema_numbers(tf.stack(numerical_fields, axis=1))
            numerical = self.transforms(numbers, missing)
            reject = tf.where(tf.reduce_any(bad, axis=1), "bad_numerical", "")
        else:
            numerical = tf.zeros([rows, 0], tf.float32)
            reject = tf.fill([rows], "")
        strings, absent = [], []
        for c in self.spec.tables:
            field = columns[c.input]
            if c.role == "multi_hot":
                values, empty = sf.multi_hot_values(field, c.separator, c.hotness)
            else:
                values, empty = field[:, None], tf.equal(field, "")[:, None]
            strings.append(values)
            absent.append(empty)
        keys = sf.string_keys(tf.concat(strings, axis=1))
        bucketed = tf.math.floormod(keys, tf.maximum(self.slot_buckets, 1))
        keys = tf.where(self.slot_buckets > 0, bucketed, keys)
        return numerical, self._ids(keys, tf.concat(absent, axis=1)), reject


def _buckets_for(keys: int) -> int:
    """A power of two with room for ``keys`` below the table's maximum load (0.8)."""
    return 1 << max(int(np.ceil(np.log2(max(keys, 1) / 0.75 + 1))), 1)
