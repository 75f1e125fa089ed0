"""Batches of a binary split read in file order by TensorFlow ops alone.

Every file of a split is read by one ``tf.data.FixedLengthRecordDataset``
whose record is one whole batch of that file (``B`` rows of ``h`` items of
``s`` bytes), so a batch costs one buffered sequential read per file and no
Python runs per batch: the decoding, the widening casts, this rank's slice
and the input checks are graph ops, and failed checks raise through a graph
assertion whose data is the one-line ``DatasetError: ...`` message
(``dlrm_main.dataset_error_in`` prints it).

TensorFlow's reader cannot seek: ``header_bytes`` reads through the skipped
prefix (about 0.1 s per GiB from the page cache, measured on a 1 GiB file),
and a file's body must be a whole number of records. Hence:

- the label and numerical records hold the whole global batch (the other
  ranks' rows could not be skipped without reading them); each rank keeps
  its ``batch_slice``;

- resuming at batch ``k`` reads through ``k`` batches of each file once;
- a short last batch is a second reader over the file's tail, whose
  ``header_bytes`` reads through the whole file once more per epoch;
- a shuffled batch order would read through half a file per batch, so
  ``BinaryDataset`` serves it with ``os.preadv`` (``read_batch``) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.data import feature_spec as fs
from models.data import pipeline
from models.data.float16 import float16_bits_to_float32
from models.data.slicing import batch_slice

_READ_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class FileColumns:
    """One file of a split: ``width`` items of ``dtype`` per row."""

    path: Path
    dtype: np.dtype
    width: int

    @property
    def row_bytes(self) -> int:
        return self.width * self.dtype.itemsize


@dataclass(frozen=True)
class SplitLayout:
    """What the reader needs to know about one split and one rank.

    ``categorical`` holds the files of the tables read, in column order, with
    their table index and cardinality (``tables``).
    """

    rows: int
    global_batch_size: int
    rank: int
    world_size: int
    label: FileColumns
    numerical: FileColumns | None
    categorical: tuple[FileColumns, ...]
    tables: tuple[int, ...]
    cardinalities: tuple[int, ...]
    check_ids: bool


def sequential_dataset(
    layout: SplitLayout,
    spec: pipeline.Element,
    num_batches: int,
    start_batch: int,
    prefetch_batches: int,
    parallel: int,
) -> tf.data.Dataset:
    """Batches ``start_batch .. num_batches-1`` in file order, of element ``spec``.

    ``num_batches`` is ``rows // B`` (drop_remainder) or ``ceil(rows / B)``.
    """
    full = layout.rows // layout.global_batch_size
    # Ending with an empty dataset of ``spec`` gives every case (full batches,
    # the short one, both, none) that element spec.
    dataset = _empty(spec)
    if num_batches > full and start_batch <= full:
        dataset = _batches(layout, full, full + 1, 1).concatenate(dataset)
    if start_batch < min(full, num_batches):
        main = _batches(layout, start_batch, min(full, num_batches), parallel)
        dataset = main.concatenate(dataset)
    return dataset.prefetch(prefetch_batches)


def _files(layout: SplitLayout) -> list[FileColumns]:
    files = [layout.label]
    if layout.numerical is not None:
        files.append(layout.numerical)
    return files + list(layout.categorical)


def _batches(layout: SplitLayout, first: int, stop: int, parallel: int) -> tf.data.Dataset:
    """Batches ``[first, stop)``, all of ``rows`` rows (the last may be the short one)."""
    batch = layout.global_batch_size
    rows = min(batch, layout.rows - first * batch)
    count = stop - first
    records = []
    for file in _files(layout):
        record = rows * file.row_bytes
        reader = tf.data.FixedLengthRecordDataset(
            str(file.path),
            record_bytes=record,
            header_bytes=first * batch * file.row_bytes,
            footer_bytes=(layout.rows - first * batch - count * rows) * file.row_bytes,
            buffer_size=max(_READ_BUFFER_BYTES, record),
        )
        # A file truncated since the split was opened yields fewer records: the
        # empty record after the last one is then met early and reported.
        records.append(reader.concatenate(tf.data.Dataset.from_tensors(tf.constant(b""))))
    indices = tf.data.Dataset.range(first, stop)
    zipped = tf.data.Dataset.zip((indices, tuple(records))).take(count)
    decode = _decoder(layout, rows)
    return zipped.map(decode, num_parallel_calls=parallel, deterministic=True)


def _decoder(layout: SplitLayout, rows: int) -> Callable[..., pipeline.Element]:
    """The graph function turning one batch's records into an element."""
    offset, local = batch_slice(rows, layout.rank, layout.world_size)
    files = _files(layout)

    def decode(index: tf.Tensor, records: tuple[tf.Tensor, ...]) -> pipeline.Element:
        first = index * layout.global_batch_size
        lengths = [_check_length(f, r, first, rows) for f, r in zip(files, records, strict=True)]
        with tf.control_dependencies([_fail_unless_all(lengths)]):
            arrays = [_decode(f, r, rows) for f, r in zip(files, records, strict=True)]
        label_bytes = arrays[0][offset : offset + local, 0]
        checks = [_check_labels(layout.label.path, label_bytes, first + offset, local)]
        if layout.numerical is not None:
            numerical = float16_bits_to_float32(arrays[1][offset : offset + local])
            checks.append(_check_finite(layout.numerical.path, numerical, first + offset))
        else:
            numerical = tf.zeros([local, 0], tf.float32)
        categorical_arrays = arrays[2 if layout.numerical is not None else 1 :]
        if layout.check_ids:
            checks += [
                _check_ids(file, ids, table, rows_of_table, first)
                for file, table, rows_of_table, ids in zip(
                    layout.categorical,
                    layout.tables,
                    layout.cardinalities,
                    categorical_arrays,
                    strict=True,
                )
            ]
        categorical = _columns(categorical_arrays, rows)
        with tf.control_dependencies([_fail_unless_all(checks)]):
            labels = tf.cast(label_bytes, tf.float32)[:, None]
            return {
                "numerical": tf.identity(numerical),
                "categorical": tf.identity(categorical),
            }, labels

    return decode


def _columns(arrays: list[tf.Tensor], rows: int) -> tf.Tensor:
    """int32 ``[rows, C]`` of the ``[rows, h]`` id arrays side by side.

    Concatenating narrow columns along axis 1 copies a few bytes per row and
    input (about 3x slower at 26 tables than below); concatenating the
    transposed tables along axis 0 copies whole rows, and one transpose
    puts the batch first.
    """
    if not arrays:
        return tf.zeros([rows, 0], tf.int32)
    wide = [tf.cast(ids, tf.int32) for ids in arrays]
    tables = [tf.reshape(w, [1, rows]) if w.shape[1] == 1 else tf.transpose(w) for w in wide]
    return tf.transpose(tf.concat(tables, axis=0))


def _decode(file: FileColumns, record: tf.Tensor, rows: int) -> tf.Tensor:
    """The record's items as a ``[rows, width]`` tensor; float16 items as their int16 bits."""
    if file.dtype == fs.LABEL_DTYPE:
        dtype = tf.uint8
    elif file.dtype == np.float16:  # no float16 tensor: see models.data.float16
        dtype = tf.int16
    else:
        dtype = tf.as_dtype(file.dtype.newbyteorder("="))
    return tf.reshape(tf.io.decode_raw(record, dtype, little_endian=True), [rows, file.width])


Check = tuple[tf.Tensor, Callable[[], tf.Tensor]]


def _fail_unless_all(checks: list[Check]) -> tf.Tensor:
    """An op that raises ``DatasetError: <message>`` of the first failed check.

    A check is ``(ok, message)``. One ``tf.cond`` guards them all (a
    conditional per check would cost a function call per check and batch);
    the messages are only formatted on failure, by one ``switch_case``.
    """
    if not checks:
        return tf.constant(True)
    oks = tf.stack([ok for ok, _ in checks])

    def fail() -> tf.Tensor:
        first = tf.cast(tf.argmin(tf.cast(oks, tf.int32)), tf.int32)
        text = tf.switch_case(first, [message for _, message in checks])
        text = tf.strings.join(["DatasetError: ", text])
        with tf.control_dependencies([tf.debugging.Assert(False, [text])]):
            return tf.constant(False)

    return tf.cond(tf.reduce_all(oks), lambda: tf.constant(True), fail)


def _string(value: tf.Tensor) -> tf.Tensor:
    return tf.strings.as_string(value)


def _check_length(file: FileColumns, record: tf.Tensor, first: tf.Tensor, rows: int) -> Check:
    want = rows * file.row_bytes

    def message() -> tf.Tensor:
        start = first * file.row_bytes
        return tf.strings.join(
            [
                f"{file.path}: short read, wanted bytes ",
                _string(start),
                "..",
                _string(start + want - 1),
                " but the file ends before them (was it truncated after the dataset was opened?)",
            ]
        )

    return tf.equal(tf.strings.length(record), want), message


def _check_labels(path: Path, labels: tf.Tensor, first: tf.Tensor, local: int) -> Check:
    def message() -> tf.Tensor:
        return tf.strings.join(
            [
                f"{path}: rows ",
                _string(first),
                "..",
                _string(first + local - 1),
                " hold label bytes other than 0 and 1",
            ]
        )

    if not local:
        return tf.constant(True), message
    return tf.reduce_max(labels) <= 1, message


def _check_finite(path: Path, numerical: tf.Tensor, first: tf.Tensor) -> Check:
    """NaN/Inf numericals would turn the bottom MLP's weights into NaN."""

    def message() -> tf.Tensor:
        bad = tf.where(tf.logical_not(tf.math.is_finite(numerical)))[0]
        value = tf.gather_nd(numerical, bad)
        return tf.strings.join(
            [
                f"{path}: row ",
                _string(first + bad[0]),
                " column ",
                _string(bad[1]),
                " holds ",
                _string(value),
                ", not a finite number",
            ]
        )

    # x * 0 is 0 for a finite x and NaN otherwise: one pass and one sum.
    return tf.equal(tf.reduce_sum(numerical * 0.0), 0.0), message


def _check_ids(file: FileColumns, ids: tf.Tensor, table: int, rows: int, first: tf.Tensor) -> Check:
    """Ids must be rows of the table; a multi-hot table's may also be PAD_ID.

    ``ids`` are the file's own (narrow) integers: a min and a max over them
    are cheaper than comparisons over the widened ids.
    """
    lowest = fs.PAD_ID if file.width > 1 else 0
    ok = tf.reduce_min(ids) >= lowest
    if rows <= np.iinfo(file.dtype).max:
        ok &= tf.reduce_max(ids) < rows
    allowed = f"[0, {rows})" + (f" or padding {fs.PAD_ID}" if file.width > 1 else "")

    def message() -> tf.Tensor:
        wide = tf.cast(ids, tf.int64)
        bad = tf.where((wide < lowest) | (wide >= rows))[0]
        return tf.strings.join(
            [
                f"{file.path}: row ",
                _string(first + bad[0]),
                " holds id ",
                _string(tf.gather_nd(ids, bad)),
                f", outside table {table}'s {allowed}",
            ]
        )

    return ok, message


def _empty(spec: pipeline.Element) -> tf.data.Dataset:
    """No element, of exactly ``spec`` (rows unknown where its rows are None)."""

    def zeros(index: tf.Tensor) -> pipeline.Element:
        unknown = tf.cast(index, tf.int32) * 0  # not a constant: keeps None rows unknown

        def like(tensor_spec: tf.TensorSpec) -> tf.Tensor:
            shape = [unknown if d is None else d for d in tensor_spec.shape.as_list()]
            return tf.zeros(tf.stack(shape), tensor_spec.dtype)

        return tf.nest.map_structure(like, spec)

    return tf.data.Dataset.range(0).map(zeros)
