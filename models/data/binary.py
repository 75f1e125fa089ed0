"""Reader of one split of a binary dataset, in whole batches.

Batch ``i`` covers rows ``[i*B, min((i+1)*B, N))`` of the split. A table of
hotness ``h`` gives ``h`` consecutive columns of ``categorical`` (its ids,
padded with ``feature_spec.PAD_ID``; one column for a single-valued table).
Each rank
reads the categorical files of the tables it owns for the whole global batch
(the embedding lookups are model parallel) and only its data-parallel slice
(``batch_slice``) of ``label.bin`` and ``numerical.bin``.

Two read paths give the same elements: ``as_dataset`` in file order uses
TensorFlow ops alone (``sequential``: one whole-batch record per file and
batch, no Python per batch); ``read_batch`` reads with ``os.preadv`` straight
into numpy buffers at computed offsets (one system call per file per batch,
thread safe without locks because no file position is shared) and serves the
shuffled batch order, which needs the random access TensorFlow's readers lack.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.data import feature_spec as fs
from models.data import pipeline
from models.data.metadata import DatasetError, DatasetMetadata, load_metadata
from models.data.sequential import FileColumns, SplitLayout, sequential_dataset
from models.data.slicing import batch_slice


class BinaryDataset:
    """Batches of one split, as numpy arrays or as a ``tf.data.Dataset``.

    Args:
        root: Dataset directory (any layout ``load_metadata`` reads).
        split: ``"train"``, ``"test"`` or ``"validation"``.
        global_batch_size: ``B``, rows of a batch summed over all ranks.
        table_ids: Tables whose ids this rank reads, in column order of
            ``categorical``; all tables when None.
        rank: This rank's data-parallel index.
        world_size: Number of data-parallel ranks.
        drop_remainder: Drop the short last batch (static shapes, e.g. XLA).
        prefetch_batches: Batches prepared ahead of the consumer.
        metadata: Already loaded metadata (its files are re-checked for this
            split only); loaded from ``root`` when None.
        shuffle: Visit batches in a per-epoch random order (rows inside a
            batch keep their order: preproc already shuffled the rows).
        seed: Seed of the batch order when shuffling.
        parallel_batches: Batches read concurrently.
        check_ids: Check every id against its table's rows (an out-of-range
            id would fail the lookup or, on some devices, read zeros).

    Example:
        >>> data = BinaryDataset("/data/criteo", "train", 65536)
        >>> for features, labels in data.as_dataset(epoch=0):
        ...     ...
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        global_batch_size: int,
        table_ids: Sequence[int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        drop_remainder: bool = False,
        prefetch_batches: int = 8,
        metadata: DatasetMetadata | None = None,
        shuffle: bool = False,
        seed: int = 0,
        parallel_batches: int = 2,
        check_ids: bool = True,
    ) -> None:
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
        if prefetch_batches < 1 or parallel_batches < 1:
            raise ValueError(
                f"prefetch_batches and parallel_batches must be >= 1, "
                f"got {prefetch_batches} and {parallel_batches}"
            )
        batch_slice(global_batch_size, rank, world_size)  # validates rank and world size
        if metadata is None:
            metadata = load_metadata(root, validate=False)
        metadata.validate_split(split)
        self.metadata = metadata
        self.split = split
        self.global_batch_size = global_batch_size
        self.rank, self.world_size = rank, world_size
        self.drop_remainder = drop_remainder
        self.prefetch_batches = prefetch_batches
        self.parallel_batches = parallel_batches
        self.shuffle, self.seed = shuffle, seed
        self.check_ids = check_ids
        self.table_ids = _check_table_ids(table_ids, metadata.num_tables)
        self.num_rows = metadata.split_rows(split)
        if drop_remainder:
            self.num_batches = self.num_rows // global_batch_size
            if self.num_rows and not self.num_batches:
                raise ValueError(
                    f"split {split!r} has {self.num_rows} rows, fewer than one batch of "
                    f"{global_batch_size}, and drop_remainder is set: no batch would be read"
                )
        else:
            self.num_batches = math.ceil(self.num_rows / global_batch_size)
        self.hotness = tuple(metadata.spec.hotness[t] for t in self.table_ids)
        self._sequential: dict[int, tf.data.Dataset] = {}
        # Keys: "label", "numerical", or the table index.
        self._paths: dict[str | int, Path] = {}
        self._fds: dict[str | int, int] = {}
        files = metadata.spec.split_files(metadata.root, split)
        paths: dict[str | int, Path | None] = {"label": files.label, "numerical": files.numerical}
        paths |= {t: files.categorical[t] for t in self.table_ids}
        if self.num_rows:
            for key, path in paths.items():
                if path is not None:
                    self._paths[key] = path
                    self._fds[key] = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.num_batches

    def __enter__(self) -> BinaryDataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Closes the files; the object cannot read afterwards."""
        fds, self._fds = getattr(self, "_fds", {}), {}
        for fd in fds.values():
            os.close(fd)

    @property
    def element_spec(self) -> pipeline.Element:
        """Shapes are static when every batch has the same size."""
        full_local = batch_slice(self.global_batch_size, self.rank, self.world_size)[1]
        fixed = self.drop_remainder or self.num_rows % self.global_batch_size == 0
        return pipeline.element_spec(
            full_local if fixed else None,
            self.global_batch_size if fixed else None,
            self.metadata.num_numerical_features,
            sum(self.hotness),
        )

    def as_dataset(self, epoch: int = 0, start_batch: int = 0) -> tf.data.Dataset:
        """The batches of one epoch from ``start_batch`` on (to resume mid-epoch).

        ``epoch`` only matters with ``shuffle``: it selects the batch order.
        In file order the batches are read by TensorFlow ops alone
        (``sequential``); a shuffled order needs random access, which
        TensorFlow's readers lack, so it reads with ``read_batch``.
        """
        order = pipeline.batch_order(self.num_batches, start_batch, self.shuffle, self.seed, epoch)
        if self.shuffle:
            return pipeline.make_dataset(
                order,
                self.read_batch,
                self.element_spec,
                self.prefetch_batches,
                self.parallel_batches,
            )
        # Building traces the graph functions (seconds for 26 tables): keep what
        # was built, e.g. for the evaluation split iterated at every evaluation.
        if start_batch not in self._sequential:
            self._sequential[start_batch] = sequential_dataset(
                self._layout(),
                self.element_spec,
                self.num_batches,
                start_batch,
                self.prefetch_batches,
                self.parallel_batches,
            )
        return self._sequential[start_batch]

    def _layout(self) -> SplitLayout:
        """The files of this split and rank, for the TensorFlow reader."""
        metadata = self.metadata
        files = metadata.spec.split_files(metadata.root, self.split)
        num_numerical = metadata.num_numerical_features
        return SplitLayout(
            rows=self.num_rows,
            global_batch_size=self.global_batch_size,
            rank=self.rank,
            world_size=self.world_size,
            label=FileColumns(files.label, fs.LABEL_DTYPE, 1),
            numerical=(
                FileColumns(files.numerical, fs.NUMERICAL_DTYPE, num_numerical)
                if num_numerical and files.numerical is not None
                else None
            ),
            categorical=tuple(
                FileColumns(files.categorical[t], metadata.categorical_dtypes[t], h)
                for t, h in zip(self.table_ids, self.hotness, strict=True)
            ),
            tables=self.table_ids,
            cardinalities=tuple(metadata.cardinalities[t] for t in self.table_ids),
            check_ids=self.check_ids,
        )

    def read_batch(self, index: int) -> pipeline.BatchArrays:
        """Reads batch ``index``.

        Returns:
            ``numerical`` float32 ``[b, N]``, ``categorical`` int32 ``[B, C]``
            (``C`` the sum of the hotness of ``table_ids``, in that order),
            ``labels`` float32 ``[b, 1]``, where
            ``B`` is this batch's global size and ``b`` this rank's slice.
        """
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} out of range [0, {self.num_batches})")
        first = index * self.global_batch_size
        rows = min(self.global_batch_size, self.num_rows - first)
        offset, local = batch_slice(rows, self.rank, self.world_size)
        offset += first
        num_numerical = self.metadata.num_numerical_features

        labels = self._read("label", fs.LABEL_DTYPE, offset, local)
        if local and labels.view(np.uint8).max() > 1:
            raise DatasetError(
                f"{self._paths['label']}: rows {offset}..{offset + local - 1} "
                "hold label bytes other than 0 and 1"
            )
        if num_numerical:
            numerical = self._read(
                "numerical", fs.NUMERICAL_DTYPE, offset * num_numerical, local * num_numerical
            )
            if local:
                self._check_finite(numerical, offset, num_numerical)
        else:
            numerical = np.empty(0, fs.NUMERICAL_DTYPE)
        categorical = np.empty((rows, sum(self.hotness)), np.int32)
        column = 0
        for table, hotness in zip(self.table_ids, self.hotness, strict=True):
            dtype = self.metadata.categorical_dtypes[table]
            ids = self._read(table, dtype, first * hotness, rows * hotness)
            if self.check_ids and rows:
                self._check_ids(ids, table, first, hotness)
            categorical[:, column : column + hotness] = ids.reshape(rows, hotness)
            column += hotness
        return (
            numerical.astype(np.float32).reshape(local, num_numerical),
            categorical,
            labels.astype(np.float32).reshape(local, 1),
        )

    def _read(self, key: str | int, dtype: np.dtype, first: int, count: int) -> np.ndarray:
        """Reads ``count`` items of ``dtype`` starting at item ``first`` of file ``key``."""
        buffer = np.empty(count, dtype)
        view = memoryview(buffer.view(np.uint8))
        position, done = first * dtype.itemsize, 0
        # A regular file may return fewer bytes than asked (Linux caps one
        # read at ~2 GiB); only 0 bytes means the file ended early.
        while done < len(view):
            got = os.preadv(self._fds[key], [view[done:]], position + done)
            if got == 0:
                raise DatasetError(
                    f"{self._paths[key]}: short read, wanted bytes {position}.."
                    f"{position + len(view) - 1} but the file ends at {position + done} "
                    "(was it truncated after the dataset was opened?)"
                )
            done += got
        return buffer

    def _check_finite(self, numerical: np.ndarray, first: int, num_numerical: int) -> None:
        """Refuses NaN/Inf numericals: one would turn the bottom MLP's weights into NaN."""
        finite = np.isfinite(numerical)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise DatasetError(
                f"{self._paths['numerical']}: row {first + bad // num_numerical} "
                f"column {bad % num_numerical} holds {numerical[bad]}, not a finite number"
            )

    def _check_ids(self, ids: np.ndarray, table: int, first: int, hotness: int) -> None:
        """Ids must be rows of the table; a multi-hot table's may also be PAD_ID."""
        rows = self.metadata.cardinalities[table]
        lowest = fs.PAD_ID if hotness > 1 else 0
        low, high = int(ids.min()), int(ids.max())
        if low < lowest or high >= rows:
            bad = int(np.flatnonzero((ids < lowest) | (ids >= rows))[0])
            allowed = f"[0, {rows})" + (f" or padding {fs.PAD_ID}" if hotness > 1 else "")
            raise DatasetError(
                f"{self._paths[table]}: row {first + bad // hotness} holds id "
                f"{int(ids[bad])}, outside table {table}'s {allowed}"
            )


def _check_table_ids(table_ids: Sequence[int] | None, num_tables: int) -> tuple[int, ...]:
    if table_ids is None:
        return tuple(range(num_tables))
    ids = tuple(int(t) for t in table_ids)
    bad = [t for t in ids if not 0 <= t < num_tables]
    if bad:
        raise ValueError(f"table_ids {bad} out of range: the dataset has {num_tables} tables")
    if len(set(ids)) != len(ids):
        raise ValueError(f"table_ids must be unique, got {list(ids)}")
    return ids
