"""CRC-32 with TensorFlow ops equals zlib.crc32 (what preproc keys string values by)."""

import zlib

import numpy as np
import tensorflow as tf

from models.serving.crc32 import crc32, crc_table
from preproc.csv_parse import hash_value


def _expected(values: list[bytes]) -> np.ndarray:
    return np.array([zlib.crc32(v) for v in values], np.int64)


def test_the_table_is_zlibs_crc_of_each_single_byte():
    # One byte b: (table[b ^ 0xFF] ^ 0x00FFFFFF) after the initial XOR, then the final XOR.
    table = crc_table()
    for b in range(256):
        assert table[b ^ 0xFF] ^ 0x00FFFFFF ^ 0xFFFFFFFF == zlib.crc32(bytes([b]))


def test_known_values_empty_and_single_bytes():
    values = [b"", b"a", b"123456789", b"\x00", b"\xff", b"\x00\x00\x00\x00"]
    got = crc32(tf.constant(values)).numpy()
    np.testing.assert_array_equal(got, _expected(values))
    assert got[2] == 0xCBF43926  # the CRC-32 check value


def test_many_random_byte_strings_of_mixed_lengths():
    rng = np.random.default_rng(3)
    values = [rng.bytes(int(n)) for n in rng.integers(0, 70, 3000)]
    values += [rng.bytes(1000), b"x" * 257]  # one long string among short ones
    got = crc32(tf.constant(values)).numpy()
    np.testing.assert_array_equal(got, _expected(values))


def test_non_ascii_text_as_preproc_hashes_it():
    # preproc decodes fields as latin-1 and hashes the bytes back: the raw bytes.
    texts = ["café", "日本語", "ü|ö", "naïve résumé", "emoji 🙂", "\u0085\u00a0"]
    utf8 = [t.encode("utf-8") for t in texts]
    latin1 = [t.encode("latin-1") for t in ("café", "naïve", "\xa0\x85")]
    values = utf8 + latin1
    got = crc32(tf.constant(values)).numpy()
    assert got.tolist() == [hash_value(v.decode("latin-1")) for v in values]


def test_shape_is_kept_and_it_runs_in_a_graph():
    values = tf.constant([[b"a", b""], [b"bc", b"\xe9t\xe9"]])
    eager = crc32(values).numpy()
    graph = tf.function(crc32, input_signature=[tf.TensorSpec([None, None], tf.string)])(values)
    np.testing.assert_array_equal(eager, graph.numpy())
    assert eager.shape == (2, 2)
    np.testing.assert_array_equal(eager.ravel(), _expected([b"a", b"", b"bc", b"\xe9t\xe9"]))


def test_an_empty_batch():
    assert crc32(tf.constant([], tf.string)).numpy().shape == (0,)
