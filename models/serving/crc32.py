"""CRC-32 (zlib's: reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF)
of strings, with TensorFlow ops.

``preproc`` keys a schema's categorical values by ``zlib.crc32`` of their bytes
(``preproc.csv_parse.hash_value``); the vocabularies hold those keys. TensorFlow
has no CRC-32 op, so the raw-input SavedModel computes it here: each string's
bytes (``unicode_decode`` as ISO-8859-1: one code point per byte, every byte
valid) go through the byte-at-a-time table algorithm, all strings of a batch
in parallel, one loop step per byte position of the longest string.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

POLYNOMIAL = 0xEDB88320  # CRC-32 (IEEE 802.3), bit-reflected, as zlib
_MASK = 0xFFFFFFFF


def crc_table() -> np.ndarray:
    """The 256-entry table: CRC register after shifting each byte value through it."""
    table = np.arange(256, dtype=np.uint64)
    for _ in range(8):
        table = np.where(table & 1, (table >> np.uint64(1)) ^ np.uint64(POLYNOMIAL), table >> 1)
    return table.astype(np.int64)


_TABLE = crc_table()


def crc32(strings: tf.Tensor) -> tf.Tensor:
    """``zlib.crc32`` of each string's bytes, as int64 in [0, 2**32); same shape.

    Args:
        strings: tf.string tensor of any shape (bytes, any encoding).
    """
    strings = tf.convert_to_tensor(strings, tf.string)
    flat = tf.reshape(strings, [-1])
    codes = tf.strings.unicode_decode(flat, "ISO-8859-1")  # ragged [n, None], one per byte
    lengths = codes.row_lengths()
    data = tf.cast(codes.to_tensor(0), tf.int64)  # [n, longest]
    table = tf.constant(_TABLE)

    def step(position: tf.Tensor, crc: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        index = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(crc, data[:, position]), 255)
        shifted = tf.bitwise.bitwise_xor(tf.gather(table, index), tf.bitwise.right_shift(crc, 8))
        return position + 1, tf.where(position < lengths, shifted, crc)

    start = tf.fill(tf.shape(flat), tf.constant(_MASK, tf.int64))
    _, crc = tf.while_loop(
        lambda position, _: position < tf.shape(data, out_type=tf.int64)[1],
        step,
        (tf.constant(0, tf.int64), start),
    )
    return tf.reshape(tf.bitwise.bitwise_xor(crc, _MASK), tf.shape(strings))
