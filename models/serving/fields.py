"""Fields of a raw row (strings) -> values, validity and missing flags, as ``preproc`` reads them.

Each function takes tf.string fields (the bytes of the field as the file holds
them, without separators or quotes) and accepts exactly what ``preproc``
accepts, with the same values:

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

from collections.abc import Sequence

import tensorflow as tf

from models.serving.crc32 import crc32
from preproc.parse import HEX_DIGITS, MAX_INTEGER_CHARS

# Python's float() grammar without inf/nan (rejected as not finite anyway):
# digits may be grouped by single underscores.
_DIGITS = "[0-9](?:_?[0-9])*"
FLOAT = rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?"
# str.isspace() over latin-1, matched in the field's UTF-8 transcoding.
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}]"
_STRIP = f"^{_SPACE}+|{_SPACE}+$"


# Criteo's fields are decoded as preproc.parse decodes them: each field's bytes right-aligned
# in 64-bit words (the first byte lowest), then the same byte-parallel ("SWAR") integer
# arithmetic in uint64, which wraps in TensorFlow as in numpy, so every field is accepted,
# refused and valued exactly as there. It is also several times cheaper than a regular
# expression and a string parse per field (RE2 takes ~0.3 us a field).
_ALL = 0xFFFFFFFFFFFFFFFF
_HIGH = 0x8080808080808080
_LOW_NIBBLES = 0x0F0F0F0F0F0F0F0F


def _u64(value: int) -> tf.Tensor:
    return tf.constant(value, tf.uint64)


def _ones(byte: int) -> tf.Tensor:
    return _u64(byte * 0x0101010101010101)


def _bytes_in_range(x: tf.Tensor, lo: int, hi: int) -> tf.Tensor:
    """High bit of each byte set iff lo <= byte <= hi (``preproc.parse._bytes_in_range``)."""
    at_least_lo = x + _ones(0x80 - lo)
    above_hi = x + _ones(0x7F - hi)
    return at_least_lo & ~above_hi & _u64(_HIGH)


def _tail_mask(skip: tf.Tensor) -> tf.Tensor:
    """Bytes [skip, 8) of each word set; ``skip`` int32, clipped to 0..8 (8: none)."""
    skip = tf.clip_by_value(skip, 0, 8)
    shift = tf.cast(8 * tf.minimum(skip, 7), tf.uint64)
    return tf.where(skip >= 8, _u64(0), tf.bitwise.left_shift(_u64(_ALL), shift))


def _pack_decimal8(digits: tf.Tensor) -> tf.Tensor:
    """Value of 8 right-aligned decimal digit bytes (``preproc.parse._pack_decimal8``)."""
    x = (digits * _u64(10) + tf.bitwise.right_shift(digits, _u64(8))) & _u64(0x00FF00FF00FF00FF)
    x = (x * _u64(100) + tf.bitwise.right_shift(x, _u64(16))) & _u64(0x0000FFFF0000FFFF)
    return (x * _u64(10000) + tf.bitwise.right_shift(x, _u64(32))) & _u64(0xFFFFFFFF)


def _lengths(columns: Sequence[tf.Tensor]) -> tf.Tensor:
    """Bytes of each field, int32 [B, C]."""
    return tf.stack([tf.strings.length(c) for c in columns], axis=1)


def _right_aligned(
    columns: Sequence[tf.Tensor], length: tf.Tensor, width: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(words uint64 [B, C, width / 8], first byte [B, C])``.

    Each field's bytes (its first ``width``: longer fields are refused anyway) end at the
    end of a ``width``-byte window, zeros before them, as 64-bit little-endian words (the
    window's first byte lowest). The columns are decoded one by one, so no string is
    copied; the alignment is a shift of the whole window, word by word.
    """
    raw = tf.stack([tf.io.decode_raw(c, tf.uint8, fixed_length=width) for c in columns], axis=1)
    words = width // 8
    shape = tf.concat([tf.shape(raw)[:2], [words, 8]], axis=0)
    left = tf.bitcast(tf.reshape(raw, shape), tf.uint64)  # [B, C, words], field at the start
    # Shift the window up by `gap` bytes: `whole` words, then `part` bytes of a word.
    gap = width - tf.minimum(length, width)
    whole, part = gap // 8, tf.cast(8 * (gap % 8), tf.uint64)
    zero = tf.zeros_like(left[:, :, 0])

    def word(index: int, offset: int) -> tf.Tensor | None:
        """Word ``index - whole - offset`` of the unshifted window (zero outside it)."""
        out = None
        for w in range(words + 1):  # whole is 0..words
            source = index - w - offset
            if 0 <= source < words:
                picked = left[:, :, source]
                out = tf.where(tf.equal(whole, w), picked, zero if out is None else out)
        return out

    aligned = []
    for index in range(words):
        shifted = tf.bitwise.left_shift(word(index, 0), part)
        below = word(index, 1)
        if below is not None:
            carried = tf.bitwise.right_shift(below, _u64(64) - part)
            shifted |= tf.where(tf.equal(part, 0), zero, carried)
        aligned.append(shifted)
    return tf.stack(aligned, axis=2), raw[:, :, 0]


def _integers(
    columns: Sequence[tf.Tensor], length: tf.Tensor, width: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(values int64, bad)`` of integer fields in a ``width``-byte window."""
    words, first = _right_aligned(columns, length, width)
    negative = (length > 0) & tf.equal(first, ord("-"))
    bad = (length > MAX_INTEGER_CHARS) | (negative & tf.equal(length, 1))
    first_digit = width - tf.minimum(length, width) + tf.cast(negative, tf.int32)
    values = tf.zeros_like(words[:, :, 0])
    for group in range(0, width, 8):
        x = words[:, :, group // 8]
        mask = _tail_mask(first_digit - group)
        non_digit = ~_bytes_in_range(x, 0x30, 0x39) & _u64(_HIGH) & mask
        bad |= tf.not_equal(non_digit, 0)
        values = values * _u64(10**8) + _pack_decimal8(x & _u64(_LOW_NIBBLES) & mask)
    values = tf.bitcast(values, tf.int64)
    return tf.where(negative, -values, values), bad


def criteo_integers(columns: Sequence[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(values int64 [B, C], missing, bad)`` of Criteo integer columns (tf.string [B] each);
    values are 0 where missing or bad (``preproc.parse.decode_integers``).

    As there, the window is 8, 16 or 24 bytes, the fewest that hold the batch's longest
    field (up to ``MAX_INTEGER_CHARS``): Criteo's integers rarely pass 8 characters.
    """
    length = _lengths(columns)
    longest = tf.reduce_max(length)
    values, bad = tf.cond(
        longest <= 8,
        lambda: _integers(columns, length, 8),
        lambda: tf.cond(
            longest <= 16,
            lambda: _integers(columns, length, 16),
            lambda: _integers(columns, length, 8 * -(-MAX_INTEGER_CHARS // 8)),
        ),
    )
    return tf.where(bad, tf.constant(0, tf.int64), values), tf.equal(length, 0), bad


def criteo_hex(columns: Sequence[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(values int64 [B, C] in [0, 2**32), missing, bad)`` of Criteo categorical columns
    (tf.string [B] each; ``preproc.parse.decode_hex``)."""
    length = _lengths(columns)
    words, _ = _right_aligned(columns, length, HEX_DIGITS)
    x = words[:, :, 0]
    mask = _tail_mask(HEX_DIGITS - tf.minimum(length, HEX_DIGITS))
    ascii_ = ~x & _u64(_HIGH)  # the range tests need bytes below 0x80
    lower = x | _ones(0x20)
    valid = (_bytes_in_range(x, 0x30, 0x39) | _bytes_in_range(lower, 0x61, 0x66)) & ascii_
    bad = (length > HEX_DIGITS) | tf.not_equal(~valid & _u64(_HIGH) & mask, 0)
    # '0'-'9' -> low nibble; letters have bit 6 set and low nibble 1..6 -> +9.
    bit6 = tf.bitwise.right_shift(x, _u64(6)) & _ones(1)
    nibbles = (x & _u64(_LOW_NIBBLES)) + _u64(9) * bit6  # zero bytes before the field: 0
    pairs = (
        tf.bitwise.left_shift(nibbles, _u64(4)) | tf.bitwise.right_shift(nibbles, _u64(8))
    ) & _u64(0x00FF00FF00FF00FF)
    quads = (
        tf.bitwise.left_shift(pairs, _u64(8)) | tf.bitwise.right_shift(pairs, _u64(16))
    ) & _u64(0x0000FFFF0000FFFF)
    values = tf.bitwise.left_shift(quads & _u64(0xFFFF), _u64(16)) | tf.bitwise.right_shift(
        quads, _u64(32)
    )
    values = tf.where(bad, _u64(0), values)
    return tf.bitcast(values, tf.int64), tf.equal(length, 0), bad


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
