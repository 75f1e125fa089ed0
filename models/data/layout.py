"""File layout and dtype rules of the binary dataset (format version 1).

The format is specified in DEVELOPERS.md ("Binary dataset format"); this
module is its single source of names in the reader, so a rename happens in
one place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
NVIDIA_MODEL_SIZE_FILE = "model_size.json"
SPLITS = ("train", "test", "validation")

LABEL_FILE = "label.bin"
NUMERICAL_FILE = "numerical.bin"
LABEL_DTYPE = np.dtype(np.bool_)
NUMERICAL_DTYPE = np.dtype(np.float16)

# Candidate categorical dtypes, smallest first (NVIDIA's rule, kept so both
# preprocessing pipelines agree on the bytes).
CATEGORICAL_DTYPES = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32))


def categorical_file(table: int) -> str:
    """Name of the file holding the ids of categorical feature ``table``."""
    return f"cat_{table}.bin"


def split_dir(root: str | Path, split: str) -> Path:
    """Directory of one split of the dataset rooted at ``root``."""
    return Path(root) / split


def categorical_dtype(table_rows: int) -> np.dtype:
    """Smallest of int8/int16/int32 whose maximum exceeds ``table_rows``.

    Args:
        table_rows: Rows of the embedding table (cardinality, id 0 included).

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
