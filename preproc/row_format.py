"""What the pipeline needs to know of a row: Criteo's fixed layout or a schema's.

The passes (units, counting, vocabularies, ids, shuffle, assembly, metadata)
are the same for every input; a ``RowFormat`` supplies what differs: the
features and their names, the reject reasons, the dtypes of the intermediate
rows and records, the line parser, and the value -> id mapping of a record.
``RowFormat()`` (no schema) is the Criteo TSV layout with its fast parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from models.data.feature_spec import PAD_ID, Column, FeatureNames, default_names, split_columns
from preproc import csv_parse
from preproc import schema as criteo
from preproc.user_schema import Schema
from preproc.vocab import VocabLookup


@dataclass(frozen=True)
class RowFormat:
    """The row layout of a run; ``schema`` None is Criteo (``labeled`` applies to it only)."""

    schema: Schema | None = None
    labeled: bool = True

    @property
    def is_criteo(self) -> bool:
        return self.schema is None

    @cached_property
    def num_numerical(self) -> int:
        return criteo.NUM_NUMERICAL if self.schema is None else len(self.schema.numerical)

    @cached_property
    def hotness(self) -> tuple[int, ...]:
        """Ids per row of each table; a schema's measured hotness needs ``with_hotness``."""
        if self.schema is None:
            return (1,) * criteo.NUM_CATEGORICAL
        if not self.schema.measured:
            waiting = [c.name for c in self.schema.tables if c.hotness is None]
            raise RuntimeError(f"the hotness of {waiting} is known after pass 1 (with_hotness)")
        return tuple(c.hotness for c in self.schema.tables)

    @property
    def num_tables(self) -> int:
        return criteo.NUM_CATEGORICAL if self.schema is None else len(self.schema.tables)

    def with_hotness(self, longest: tuple[int, ...]) -> RowFormat:
        """The row format of pass 2: each multi-hot table's hotness from the longest list
        pass 1 saw (``SchemaColumn.hotness_for``); Criteo's is itself."""
        if self.schema is None:
            return self
        return RowFormat(self.schema.with_hotness(longest), self.labeled)

    @cached_property
    def multi_hot(self) -> tuple[bool, ...]:
        """Per table: padded with ``PAD_ID`` (multi-hot) rather than id 0 when absent."""
        if self.schema is None:
            return (False,) * criteo.NUM_CATEGORICAL
        return tuple(c.role == "multi_hot" for c in self.schema.tables)

    @cached_property
    def names(self) -> FeatureNames:
        if self.schema is None:
            return default_names(self.num_numerical, self.num_tables)
        s = self.schema
        return FeatureNames(
            s.label.name, tuple(c.name for c in s.numerical), tuple(c.name for c in s.tables)
        )

    @property
    def reasons(self) -> tuple[str, ...]:
        return criteo.REASONS if self.schema is None else csv_parse.REASONS

    @property
    def gzip_error_code(self) -> int:
        return self.reasons.index("gzip_error")

    @cached_property
    def parsed_dtype(self) -> np.dtype:
        """Rows pass 2 reads: pass 1's at the tables' full hotness (``widen``)."""
        if self.schema is None:
            return criteo.PARSED_DTYPE
        return csv_parse.parsed_dtype(self.schema, self.hotness)

    def widen(self, rows: np.ndarray) -> np.ndarray:
        """A block of pass-1 rows as ``parsed_dtype``: a schema's blocks hold each
        multi-hot table at the block's longest list (``csv_parse.parsed_dtype``)."""
        return rows if self.schema is None else csv_parse.widen(rows, self.parsed_dtype)

    def record_dtype(self, cat_dtypes: list[np.dtype]) -> np.dtype:
        """Records written by pass 2 (ids in their on-disk dtype)."""
        if self.schema is None:
            return criteo.record_dtype(cat_dtypes)
        fields = [("label", np.uint8), ("numerical", criteo.NUMERICAL_DTYPE, (self.num_numerical,))]
        for t, (d, h) in enumerate(zip(cat_dtypes, self.hotness, strict=True)):
            dtype = np.dtype(d).newbyteorder("<")
            fields.append((f"cat_{t}", dtype, (h,)) if h > 1 else (f"cat_{t}", dtype))
        return np.dtype(fields)

    def columns(self, cat_dtypes: tuple[str, ...]) -> list[Column]:
        """The split files, in the order ``record_values`` gives their contents."""
        return split_columns(self.num_numerical, cat_dtypes, self.hotness, self.names)

    def record_values(self, records: np.ndarray) -> list[np.ndarray]:
        values = [records["label"].astype(np.bool_)]
        if self.num_numerical:
            values.append(records["numerical"])
        return values + [records[f"cat_{t}"] for t in range(self.num_tables)]

    def to_records(
        self, rows: np.ndarray, tables: list[VocabLookup], dtype: np.dtype
    ) -> np.ndarray:
        """Records of a schema's accepted rows (Criteo's: ``transform_pass.to_records``)."""
        records = np.empty(rows.size, dtype)
        records["label"] = rows["label"]
        records["numerical"] = rows["numerical"]
        for t, (table, h) in enumerate(zip(tables, self.hotness, strict=True)):
            values = np.ascontiguousarray(rows[f"values_{t}"])
            missing = np.ascontiguousarray(rows[f"missing_{t}"] > 0)
            ids = table(values.reshape(-1), missing.reshape(-1)).reshape(rows.size, h)
            if self.multi_hot[t]:
                ids[missing] = PAD_ID
            records[f"cat_{t}"] = ids if h > 1 else ids[:, 0]
        return records


CRITEO = RowFormat()
