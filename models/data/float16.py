"""float16 values without float16 tensors.

The binary dataset stores numericals as float16 (``feature_spec.NUMERICAL_DTYPE``).
On CPUs without AVX512-FP16, TensorFlow's oneDNN build logs an error line
("oneDNN supports DT_HALF only on platforms with AVX-512...") at the first
float16 cast of a process, so the readers and the synthetic generator convert
with integer bit operations instead, with the same results as the cast.
"""

from __future__ import annotations

import tensorflow as tf

_FLOAT16_MIN_NORMAL = 2.0**-14
_FLOAT16_SUBNORMAL_STEP = 2.0**-24
_FLOAT32_BITS_DROPPED = 13  # float32 keeps 23 mantissa bits, float16 10
_EXPONENT_BIAS_GAP = 127 - 15  # float32's exponent bias minus float16's


def round_to_float16(values: tf.Tensor) -> tf.Tensor:
    """float32 ``values`` rounded to the nearest float16 (ties to even), as float32.

    What ``tf.cast`` through float16 and back gives for finite ``|values| <=
    65504``, without a float16 tensor: on CPUs without AVX512-FP16,
    TensorFlow's oneDNN build logs an error line at the first float16 cast.
    """
    bits = tf.bitcast(values, tf.int32)
    lowest_kept = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, _FLOAT32_BITS_DROPPED), 1)
    dropped = (1 << _FLOAT32_BITS_DROPPED) - 1
    # Adding half an ulp minus one, plus the kept bit, then truncating rounds
    # to nearest with ties to even; a carry moves into the exponent as it should.
    rounded = tf.bitwise.bitwise_and(bits + (dropped >> 1) + lowest_kept, ~dropped)
    normal = tf.bitcast(rounded, tf.float32)
    # Below float16's smallest normal, its values are multiples of 2**-24.
    subnormal = tf.round(values / _FLOAT16_SUBNORMAL_STEP) * _FLOAT16_SUBNORMAL_STEP
    return tf.where(tf.abs(values) < _FLOAT16_MIN_NORMAL, subnormal, normal)


def float16_bits_to_float32(bits: tf.Tensor) -> tf.Tensor:
    """float16 values given by their 16 bits (``int16`` or ``uint16``), as float32.

    Exact, as ``tf.cast`` of the float16 values is: normal numbers move their
    exponent and mantissa into float32's fields, subnormals are ``mantissa *
    2**-24``, infinities and NaNs keep their class (and a NaN its payload).
    """
    b = tf.bitwise.bitwise_and(tf.cast(bits, tf.int32), 0xFFFF)
    exponent = tf.bitwise.bitwise_and(tf.bitwise.right_shift(b, 10), 0x1F)
    mantissa = tf.bitwise.bitwise_and(b, 0x3FF)
    shifted = tf.bitwise.left_shift(mantissa, _FLOAT32_BITS_DROPPED)
    normal = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(exponent + _EXPONENT_BIAS_GAP, 23), shifted
    )
    special = tf.bitwise.bitwise_or(tf.constant(0x7F800000, tf.int32), shifted)  # inf, NaN
    magnitude = tf.where(
        exponent == 0,
        tf.cast(mantissa, tf.float32) * _FLOAT16_SUBNORMAL_STEP,
        tf.bitcast(tf.where(exponent == 0x1F, special, normal), tf.float32),
    )
    negative = tf.bitwise.bitwise_and(b, 0x8000) != 0
    return tf.where(negative, -magnitude, magnitude)
