"""The input schema of ``python -m preproc --schema SCHEMA.yaml``: what each column is.

```yaml
format: csv            # csv | tsv
header: true           # the first line of every input file names the columns
columns:               # in input order
  - {name: clicked, role: label}                       # 0 or 1
  - {name: price, role: numerical, transform: log3}    # int or float; empty = missing
  - {name: user, role: categorical, frequency_threshold: 3}   # any string
  - {name: tags, role: multi_hot, separator: "|"}      # a list: a|b|c
```

Optional keys: ``transform`` (numerical: ``log3``, ``log1p_clamp`` or ``none``;
default ``--numerical_transform``), ``frequency_threshold`` (categorical and
multi-hot; default ``--frequency_threshold``), ``hash_buckets: N`` (categorical
and multi-hot: values are hashed into N buckets before the vocabulary is built,
so the table has at most N + 1 rows however many distinct values there are).
A multi-hot column needs ``separator``. Its hotness (ids per row, the on-disk
row width) is measured by pass 1: the longest list, counted after the split
with empty items dropped and duplicates kept (as pass 2 writes them), and at
least ``MIN_MULTI_HOT`` so that a row can always be padded. ``max_hotness: N``
caps the measured width; ``hotness: N`` fixes it (shorter lists padded). With
either, longer lists keep their first N values and are counted as truncated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from preproc.numerical import TRANSFORMS

ROLES = ("label", "numerical", "categorical", "multi_hot")
FORMATS = {"csv": ",", "tsv": "\t"}
_COLUMN_KEYS = {
    "label": {"name", "role"},
    "numerical": {"name", "role", "transform"},
    "categorical": {"name", "role", "frequency_threshold", "hash_buckets"},
    "multi_hot": {
        "name",
        "role",
        "frequency_threshold",
        "hash_buckets",
        "separator",
        "hotness",
        "max_hotness",
    },
}
# Least hotness of a multi-hot column: an empty list is a row of padding (``PAD_ID``),
# which a single-valued feature (hotness 1) may not hold.
MIN_MULTI_HOT = 2


class SchemaError(ValueError):
    """A schema file is missing, malformed or inconsistent (the message names the file)."""


@dataclass(frozen=True)
class SchemaColumn:
    """One input column; ``transform``/``frequency_threshold`` None take the run's default.

    ``hotness``: ids per row, 1 for a categorical column; for a multi-hot column the
    schema's fixed width, or None until pass 1 has measured it (``with_hotness``).
    """

    name: str
    role: str
    separator: str | None = None
    hotness: int | None = 1
    frequency_threshold: int | None = None
    transform: str | None = None
    hash_buckets: int | None = None
    max_hotness: int | None = None

    @property
    def cap(self) -> int | None:
        """Values kept per list (longer lists are truncated); None keeps them all."""
        return self.hotness if self.hotness is not None else self.max_hotness

    def hotness_for(self, longest: int) -> tuple[int, str]:
        """The hotness of this multi-hot column when its longest list (empty items
        dropped, before truncation) holds ``longest`` values, and what decided it:
        ``hotness`` (the schema's), ``max_hotness`` (the cap), ``longest_list`` or
        ``minimum`` (``MIN_MULTI_HOT``)."""
        if self.hotness is not None:
            return self.hotness, "hotness"
        if self.max_hotness is not None and longest > self.max_hotness:
            return self.max_hotness, "max_hotness"
        if longest < MIN_MULTI_HOT:
            return MIN_MULTI_HOT, "minimum"
        return longest, "longest_list"


@dataclass(frozen=True)
class Schema:
    """A validated schema. ``path`` is where it was read (for messages only)."""

    path: str
    format: str
    header: bool
    columns: tuple[SchemaColumn, ...]

    @property
    def delimiter(self) -> str:
        return FORMATS[self.format]

    def of_role(self, *roles: str) -> tuple[SchemaColumn, ...]:
        return tuple(c for c in self.columns if c.role in roles)

    @property
    def label(self) -> SchemaColumn:
        return self.of_role("label")[0]

    @property
    def numerical(self) -> tuple[SchemaColumn, ...]:
        return self.of_role("numerical")

    @property
    def tables(self) -> tuple[SchemaColumn, ...]:
        """Categorical and multi-hot columns in input order: one embedding table each."""
        return self.of_role("categorical", "multi_hot")

    @property
    def measured(self) -> bool:
        """True when every table's hotness is known (none waits for pass 1)."""
        return all(c.hotness is not None for c in self.tables)

    def with_hotness(self, longest: tuple[int, ...]) -> Schema:
        """The schema pass 2 writes: per table, ``longest`` is its longest list in the
        input (pass 1), turned into the hotness by ``SchemaColumn.hotness_for``."""
        tables = iter(zip(self.tables, longest, strict=True))
        columns = []
        for column in self.columns:
            if column.role in ("categorical", "multi_hot"):
                table, n = next(tables)
                if table.role == "multi_hot":
                    column = replace(column, hotness=table.hotness_for(n)[0])
            columns.append(column)
        return replace(self, columns=tuple(columns))

    def to_dict(self) -> dict[str, Any]:
        """What determines the output bytes (not the path): recorded in metadata.json."""
        columns = []
        for c in self.columns:
            entry: dict[str, Any] = {"name": c.name, "role": c.role}
            if c.role == "multi_hot":
                entry["separator"] = c.separator
                # Only the keys the schema gives: a schema with hotness keeps the record
                # (and the output bytes) it had before the hotness could be measured.
                for key in ("hotness", "max_hotness"):
                    if getattr(c, key) is not None:
                        entry[key] = getattr(c, key)
            if c.frequency_threshold is not None:
                entry["frequency_threshold"] = c.frequency_threshold
            if c.transform is not None:
                entry["transform"] = c.transform
            if c.hash_buckets is not None:
                entry["hash_buckets"] = c.hash_buckets
            columns.append(entry)
        return {"format": self.format, "header": self.header, "columns": columns}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _column(raw: Any, index: int, where: str) -> SchemaColumn:
    at = f"{where}: columns[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise SchemaError(f"{at}: needs a name (a non-empty string), got {raw!r}")
    at += f" ({raw['name']})"
    role = raw.get("role")
    if role not in ROLES:
        raise SchemaError(f"{at}: unknown role {role!r}, expected one of {list(ROLES)}")
    unknown = sorted(set(raw) - _COLUMN_KEYS[role])
    if unknown:
        raise SchemaError(
            f"{at}: keys {unknown} do not apply to role {role} "
            f"(allowed: {sorted(_COLUMN_KEYS[role])})"
        )
    threshold = raw.get("frequency_threshold")
    if threshold is not None and (not _is_int(threshold) or threshold < 0):
        raise SchemaError(f"{at}: frequency_threshold must be an int >= 0, got {threshold!r}")
    transform = raw.get("transform")
    if transform is not None and transform not in TRANSFORMS:
        raise SchemaError(f"{at}: transform must be one of {sorted(TRANSFORMS)}, got {transform!r}")
    buckets = raw.get("hash_buckets")
    if buckets is not None and (not _is_int(buckets) or not 1 <= buckets < 2**31 - 1):
        raise SchemaError(f"{at}: hash_buckets must be an int in [1, 2**31 - 1), got {buckets!r}")
    separator, hotness, max_hotness = raw.get("separator"), 1, None
    if role == "multi_hot":
        if not isinstance(separator, str) or len(separator) != 1:
            raise SchemaError(f"{at}: a multi_hot column needs a one-character separator")
        for key in ("hotness", "max_hotness"):
            value = raw.get(key)
            if value is not None and (not _is_int(value) or value < MIN_MULTI_HOT):
                raise SchemaError(
                    f"{at}: {key} must be an int >= {MIN_MULTI_HOT} (ids kept per row; longer "
                    f"lists are truncated and counted), got {value!r}"
                )
        hotness, max_hotness = raw.get("hotness"), raw.get("max_hotness")
        if hotness is not None and max_hotness is not None:
            raise SchemaError(
                f"{at}: give hotness (a fixed width) or max_hotness (a cap on the measured "
                f"width), not both (got hotness {hotness}, max_hotness {max_hotness})"
            )
    return SchemaColumn(
        raw["name"], role, separator, hotness, threshold, transform, buckets, max_hotness
    )


def parse_schema(raw: Any, where: str) -> Schema:
    """Validates a schema as loaded from YAML; every error is one line starting with ``where``."""
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: expected a mapping with format, header and columns")
    unknown = sorted(set(raw) - {"format", "header", "columns"})
    if unknown:
        raise SchemaError(f"{where}: unknown keys {unknown} (expected format, header, columns)")
    fmt = raw.get("format", "csv")
    if fmt not in FORMATS:
        raise SchemaError(f"{where}: format must be one of {sorted(FORMATS)}, got {fmt!r}")
    header = raw.get("header", False)
    if not isinstance(header, bool):
        raise SchemaError(f"{where}: header must be true or false, got {header!r}")
    if not isinstance(raw.get("columns"), list) or not raw["columns"]:
        raise SchemaError(f"{where}: columns must be a non-empty list of {{name, role}}")
    columns = tuple(_column(c, i, where) for i, c in enumerate(raw["columns"]))
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(f"{where}: duplicate column names {duplicates}")
    labels = [c.name for c in columns if c.role == "label"]
    if len(labels) != 1:
        raise SchemaError(f"{where}: exactly one column needs role label, got {labels}")
    if not any(c.role in ("categorical", "multi_hot") for c in columns):
        raise SchemaError(f"{where}: at least one categorical or multi_hot column is needed")
    separators = [c.separator for c in columns if c.role == "multi_hot"]
    if FORMATS[fmt] in separators:
        raise SchemaError(f"{where}: a multi_hot separator cannot be the {fmt} delimiter")
    return Schema(where, fmt, header, columns)


def read_schema(path: str | Path) -> Schema:
    """Reads and validates a schema file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SchemaError(f"{path}: cannot read the schema ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid"
        raise SchemaError(f"{path}{line}: not valid YAML ({problem})") from None
    return parse_schema(raw, str(path))
