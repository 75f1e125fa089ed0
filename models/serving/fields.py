"""Fields of a raw row (strings) -> values, validity and missing flags, as ``preproc`` reads them.

Each function takes a tf.string tensor of fields (the bytes of the field as the
file holds them, without separators or quotes) and accepts exactly what
``preproc`` accepts, with the same values:

- Criteo (``preproc.parse``): integers are an optional ``-`` and digits, at
  most ``MAX_INTEGER_CHARS`` characters; categorical values 1 to
  ``HEX_DIGITS`` hex digits (either case); an empty field is missing.
- A schema (``preproc.csv_parse``): a number is what Python's ``float``
  accepts once the field is stripped of whitespace (as ``str.strip`` of the
  latin-1 text: ASCII whitespace, 0x1C-0x1F, 0x85, 0xA0), finite; empty after
  stripping is missing. Categorical values are not stripped: any non-empty
  field is a value, keyed by the CRC-32 of its bytes (``string_keys``; the
  caller takes it modulo ``hash_buckets``).
  A multi-hot field is split at its separator, empty elements dropped, the
  first ``hotness`` kept.
"""

from __future__ import annotations

import tensorflow as tf

from models.serving.crc32 import crc32
from preproc.parse import HEX_DIGITS, MAX_INTEGER_CHARS

CRITEO_INTEGER = f"[0-9]{{1,{MAX_INTEGER_CHARS}}}|-[0-9]{{1,{MAX_INTEGER_CHARS - 1}}}"
CRITEO_HEX = f"[0-9a-fA-F]{{1,{HEX_DIGITS}}}"
# Python's float() grammar without inf/nan (rejected as not finite anyway):
# digits may be grouped by single underscores.
_DIGITS = "[0-9](?:_?[0-9])*"
FLOAT = rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?"
# str.isspace() over latin-1, matched in the field's UTF-8 transcoding.
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}]"
_STRIP = f"^{_SPACE}+|{_SPACE}+$"


def criteo_integers(fields: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(values int64, missing, bad)`` of Criteo integer fields (values 0 where not valid)."""
    missing = tf.equal(fields, "")
    good = tf.strings.regex_full_match(fields, CRITEO_INTEGER)
    values = tf.strings.to_number(tf.where(good, fields, "0"), tf.int64)
    return values, missing, ~good & ~missing


def criteo_hex(fields: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(values int64 in [0, 2**32), missing, bad)`` of Criteo categorical (hex) fields."""
    missing = tf.equal(fields, "")
    good = tf.strings.regex_full_match(fields, CRITEO_HEX)
    text = tf.where(good, fields, "0")
    flat = tf.reshape(text, [-1])
    # Left-aligned bytes, zero-padded to HEX_DIGITS; position k weighs 16**(length - 1 - k).
    codes = tf.cast(tf.io.decode_raw(flat, tf.uint8, fixed_length=HEX_DIGITS), tf.int64)
    nibbles = tf.where(codes <= ord("9"), codes - ord("0"), tf.bitwise.bitwise_or(codes, 32) - 87)
    lengths = tf.cast(tf.strings.length(flat), tf.int64)[:, None]
    position = tf.range(HEX_DIGITS, dtype=tf.int64)[None, :]
    shift = 4 * tf.maximum(lengths - 1 - position, 0)
    weighted = tf.where(position < lengths, tf.bitwise.left_shift(nibbles, shift), 0)
    values = tf.reshape(tf.reduce_sum(weighted, axis=1), tf.shape(fields))
    return values, missing, ~good & ~missing


def schema_numbers(fields: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(values float64, missing, bad)`` of a schema's numerical fields."""
    # Transcoding makes every byte one code point, so the pattern can name 0x85 and 0xA0.
    text = tf.strings.regex_replace(
        tf.strings.unicode_transcode(fields, "ISO-8859-1", "UTF-8"), _STRIP, ""
    )
    missing = tf.equal(text, "")
    good = tf.strings.regex_full_match(text, FLOAT)
    plain = tf.strings.regex_replace(tf.where(good, text, "0"), "_", "")
    values = tf.strings.to_number(plain, tf.float64)
    finite = tf.math.is_finite(values)
    bad = ~missing & ~(good & finite)
    return tf.where(good & finite, values, 0.0), missing, bad


def string_keys(strings: tf.Tensor) -> tf.Tensor:
    """CRC-32 keys (int64) of strings, any shape; each distinct string is hashed once."""
    flat = tf.reshape(strings, [-1])
    distinct, index = tf.unique(flat, out_idx=tf.int64)
    return tf.reshape(tf.gather(crc32(distinct), index), tf.shape(strings))


def multi_hot_values(
    fields: tf.Tensor, separator: str, hotness: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(values string [B, hotness], absent bool [B, hotness])`` of a multi-hot column [B].

    ``separator`` is the schema's one character; preproc splits the latin-1 text,
    so a character beyond latin-1 never occurs in it and never splits.
    """
    if ord(separator) < 256:
        parts = tf.strings.split(fields, sep=separator.encode("latin-1"))
    else:
        parts = tf.RaggedTensor.from_tensor(fields[:, None])
    kept = tf.ragged.boolean_mask(parts, tf.not_equal(parts, ""))[:, :hotness]
    values = kept.to_tensor("", shape=[None, hotness])
    absent = tf.range(hotness, dtype=tf.int64)[None, :] >= kept.row_lengths()[:, None]
    return values, absent
