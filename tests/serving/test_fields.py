"""Raw fields decoded with TensorFlow ops are accepted, rejected and valued as preproc does:
each case goes through preproc's own parser (``parse.parse_block``, ``csv_parse.CsvParser``)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf

from models.serving import fields as sf
from preproc.csv_parse import CsvParser, parsed_dtype, widen
from preproc.parse import parse_block
from preproc.schema import NUM_CATEGORICAL, NUM_NUMERICAL, REASONS
from preproc.user_schema import parse_schema

_INT_ALPHABET = "0123456789-+ x\x0b."
_HEX_ALPHABET = "0123456789abcdefABCDEFgG-x \xe9"


def _random_text(rng: random.Random, alphabet: str, longest: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


def _criteo_fields(rng: random.Random, n: int, longest: int) -> list[list[str]]:
    """Rows of 13 integer and 26 hex fields: mostly valid, some of every invalid kind;
    integer fields of at most ``longest`` characters (the decode's window follows it)."""
    rows = []
    for i in range(n):
        ints = [str(rng.randint(-(10**17) + 1, 10**18 - 1) // 10 ** rng.randint(0, 17))[:longest]
                for _ in range(NUM_NUMERICAL)]  # fmt: skip
        hexes = [f"{rng.getrandbits(32):x}"[: rng.randint(1, 8)] for _ in range(NUM_CATEGORICAL)]
        for j in range(NUM_NUMERICAL):
            if rng.random() < 0.1:
                ints[j] = ""
        for j in range(NUM_CATEGORICAL):
            if rng.random() < 0.1:
                hexes[j] = ""
            elif rng.random() < 0.2:
                hexes[j] = hexes[j].upper()
        if i % 5 == 1:
            ints[rng.randrange(NUM_NUMERICAL)] = _random_text(rng, _INT_ALPHABET, longest)
        if i % 5 == 2:
            hexes[rng.randrange(NUM_CATEGORICAL)] = _random_text(rng, _HEX_ALPHABET, 10)
        if i % 11 == 3:  # the longest accepted and the shortest refused
            edges = ["9" * 18, "-" + "9" * 17, "1" * 19, "-" + "1" * 18, "-", "-0", "9" * 8]
            ints[0] = rng.choice([e for e in edges if len(e) <= longest])
        rows.append(ints + hexes)
    return rows


@pytest.mark.parametrize("longest", [8, 16, 25])
def test_criteo_fields_as_preproc_parse_reads_them(longest):
    # The decode's window is 8, 16 or 24 bytes after the batch's longest integer field.
    rows = _criteo_fields(random.Random(longest), 6000, longest)
    data = "".join("1\t" + "\t".join(r) + "\n" for r in rows).encode("latin-1")
    parsed = parse_block(data, labeled=True)
    fields = tf.constant([[f.encode("latin-1") for f in r] for r in rows])
    columns = tf.unstack(fields, axis=1)
    ints, int_missing, int_bad = sf.criteo_integers(columns[:NUM_NUMERICAL])
    hexes, hex_missing, hex_bad = sf.criteo_hex(columns[NUM_NUMERICAL:])
    int_bad, hex_bad = int_bad.numpy().any(1), hex_bad.numpy().any(1)
    reasons = np.full(len(rows), "", object)
    reasons[hex_bad] = "bad_categorical"
    reasons[int_bad] = "bad_integer"  # the first bad field's reason: integers come first
    expected = np.full(len(rows), "", object)
    expected[parsed.reject_lines] = [REASONS[c] for c in parsed.reject_codes]
    assert (expected != "").sum() > 1000 and {"bad_integer", "bad_categorical"} <= set(expected)
    np.testing.assert_array_equal(reasons, expected)
    good = reasons == ""
    np.testing.assert_array_equal(ints.numpy()[good], parsed.integers)
    np.testing.assert_array_equal(int_missing.numpy()[good], parsed.integer_missing)
    np.testing.assert_array_equal(hexes.numpy()[good], parsed.categorical.astype(np.int64))
    np.testing.assert_array_equal(hex_missing.numpy()[good], parsed.categorical_missing)


_NUMBER_ALPHABET = "0123456789_.eE+- \t\xa0\x85\x1cx,"


def _number_texts(rng: random.Random) -> list[str]:
    texts = [_random_text(rng, _NUMBER_ALPHABET, 12) for _ in range(20000)]
    for _ in range(5000):
        value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-300, 300)
        texts.append(rng.choice(["{!r}", "{:.3e}", "{:f}", " {} ", "{:_}", "+{}"]).format(value))
    texts += [
        "1_000",
        "1e1_0",
        "_1",
        "1_",
        "1__0",
        ".",
        ".5",
        "5.",
        "1.e5",
        "0x10",
        "1e400",
        "-1e400",
        "inf",
        "-Infinity",
        "nan",
        "NaN",
        "1" * 400,
        "0." + "0" * 300 + "1",
        "\xa0 7 \x85",
        "\xb2",
        "\xb9",
        "1\xa0",
        "",
        "   ",
        "-0",
        "4.9e-324",
        "1e-400",
    ]
    return [t.replace(",", "") for t in texts]


def test_schema_numbers_as_python_float_after_strip():
    texts = _number_texts(random.Random(8))
    schema = parse_schema(
        {
            "columns": [
                {"name": "y", "role": "label"},
                {"name": "x", "role": "numerical"},
                {"name": "c", "role": "categorical"},
            ]
        },
        "test",
    )
    lines = "".join(f"1,{t},c\n" for t in texts).encode("latin-1")
    block = CsvParser(schema, "log1p_clamp").parse(lines)
    values, missing, bad = sf.schema_numbers(tf.constant([t.encode("latin-1") for t in texts]))
    values, missing, bad = values.numpy(), missing.numpy(), bad.numpy()
    np.testing.assert_array_equal(np.flatnonzero(bad), block.reject_lines)
    assert 1000 < bad.sum() < len(texts) - 5000
    for text, value, absent, refused in zip(texts, values, missing, bad, strict=True):
        if refused:
            continue
        stripped = text.strip()
        assert absent == (stripped == ""), text
        if not absent:
            assert value == float(stripped), text  # exactly the value csv_parse reads


def _schema_table_fields(rng: random.Random, n: int) -> list[tuple[str, str]]:
    words = ["alice", "bob", "émile", "naïve", "日本", " space ", "x" * 40, "0", "|", ""]
    rows = []
    for _ in range(n):
        user = rng.choice(words).replace("|", "")
        tags = "|".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        rows.append((user, tags))
    return rows


def test_categorical_and_multi_hot_keys_as_csv_parse():
    hotness, buckets = 3, 1000
    rows = _schema_table_fields(random.Random(9), 3000)
    schema = parse_schema(
        {
            "format": "tsv",
            "columns": [
                {"name": "y", "role": "label"},
                {"name": "user", "role": "categorical"},
                {"name": "tags", "role": "multi_hot", "separator": "|", "hotness": hotness},
                {
                    "name": "bucketed",
                    "role": "multi_hot",
                    "separator": "|",
                    "hotness": hotness,
                    "hash_buckets": buckets,
                },
            ],
        },
        "test",
    )
    lines = "".join(f"0\t{u}\t{t}\t{t}\n" for u, t in rows).encode("utf-8")
    block = CsvParser(schema, "log3").parse(lines)
    assert block.reject_lines.size == 0
    raw = [[field.encode("utf-8") for field in row] for row in rows]
    users = tf.constant([r[0] for r in raw])
    user_keys = sf.string_keys(users).numpy()
    user_missing = (users == b"").numpy()
    tags, absent = sf.multi_hot_values(tf.constant([r[1] for r in raw]), "|", hotness)
    tag_keys, absent = sf.string_keys(tags).numpy(), absent.numpy()
    rows = widen(block.rows, parsed_dtype(schema, (1, hotness, hotness)))
    user_slot = rows["values_0"][:, 0].astype(np.int64)
    np.testing.assert_array_equal(rows["missing_0"][:, 0].astype(bool), user_missing)
    np.testing.assert_array_equal(user_slot[~user_missing], user_keys[~user_missing])
    for table, modulo in ((1, None), (2, buckets)):
        want = rows[f"values_{table}"].astype(np.int64)
        np.testing.assert_array_equal(rows[f"missing_{table}"].astype(bool), absent)
        keys = tag_keys % modulo if modulo else tag_keys
        np.testing.assert_array_equal(keys[~absent], want[~absent])
    assert absent.all(1).any() and (~absent).all(1).any()  # empty and full lists occur


def test_a_separator_beyond_latin1_never_splits():
    values, absent = sf.multi_hot_values(tf.constant(["a€b", "", "€"]), "€", 2)
    assert values.numpy().tolist() == [["a€b".encode(), b""], [b"", b""], ["€".encode(), b""]]
    assert absent.numpy().tolist() == [[False, True], [True, True], [False, True]]
