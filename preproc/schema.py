"""Criteo row layout, reject reasons and the intermediate records of both passes.

The output format (file names, dtypes) is defined in ``models/data/feature_spec.py``.
"""

from __future__ import annotations

import numpy as np

from models.data.feature_spec import NUMERICAL_DTYPE

NUM_NUMERICAL = 13
NUM_CATEGORICAL = 26

# Reject reasons: the codes are stored in per-unit files, the names in metadata.json.
REASONS = (
    "empty_line",
    "field_count",
    "bad_label",
    "bad_integer",
    "bad_categorical",
    "gzip_error",
)
REASON_CODE = {name: code for code, name in enumerate(REASONS)}


def num_fields(labeled: bool) -> int:
    """Tab-separated fields of a well-formed line."""
    return NUM_NUMERICAL + NUM_CATEGORICAL + (1 if labeled else 0)


def record_dtype(cat_dtypes: list[np.dtype]) -> np.dtype:
    """Packed row of the intermediate files written by pass 2."""
    if len(cat_dtypes) != NUM_CATEGORICAL:
        raise ValueError(f"{NUM_CATEGORICAL} categorical dtypes expected, got {len(cat_dtypes)}")
    fields = [("label", np.uint8), ("numerical", NUMERICAL_DTYPE, (NUM_NUMERICAL,))]
    fields += [(f"cat_{i}", np.dtype(d).newbyteorder("<")) for i, d in enumerate(cat_dtypes)]
    return np.dtype(fields)


# Rows accepted by pass 1, kept on disk for pass 2 so that no line is parsed
# twice: features already transformed, raw categorical values, missing bits.
PARSED_DTYPE = np.dtype(
    [
        ("label", np.uint8),
        ("numerical", NUMERICAL_DTYPE, (NUM_NUMERICAL,)),
        ("categorical", "<u4", (NUM_CATEGORICAL,)),
        ("categorical_missing", "<u4"),
    ]
)


def pack_missing(missing: np.ndarray) -> np.ndarray:
    """bool [n, 26] -> uint32 [n] bit masks (bit t: table t missing)."""
    packed = np.packbits(missing, axis=1, bitorder="little")  # [n, 4] bytes
    return np.ascontiguousarray(packed).view("<u4")[:, 0]


def unpack_missing(bits: np.ndarray) -> np.ndarray:
    as_bytes = np.ascontiguousarray(bits, "<u4").view(np.uint8).reshape(-1, 4)
    return np.unpackbits(as_bytes, axis=1, count=NUM_CATEGORICAL, bitorder="little").astype(bool)
