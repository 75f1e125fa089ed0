"""The numpy fast path decodes exactly like the slow path and defers every irregular block."""

import sys

import numpy as np
import pytest

from preproc.fast_parse import parse_lines, try_parse
from preproc.parse import parse_block
from tests.preproc.helpers import LABELED_SAMPLES, sample_lines
from tests.preproc.test_parse import CATS, line

FIELDS = ("labels", "integers", "integer_missing", "categorical", "categorical_missing")


def assert_same(a, b):
    assert a.num_lines == b.num_lines
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("name", LABELED_SAMPLES)
def test_fast_path_equals_slow_path_on_real_rows(name):
    data = b"\n".join(sample_lines(name))
    fast = try_parse(data)
    assert fast is not None
    assert_same(fast, parse_block(data))


def test_fast_path_handles_short_hex_crlf_and_missing_final_newline():
    rows = [line("1", cats=["1", "abCD", *CATS[2:]]), line("0", ints=[""] * 13, cats=[""] * 26)]
    data = b"\r\n".join(rows)
    fast = try_parse(data)
    assert fast is not None
    assert_same(fast, parse_block(data))


@pytest.mark.parametrize(
    "bad",
    [
        line(
            "1", ints=[" 3", *["1"] * 12]
        ),  # a lenient number parser (pyarrow's) would accept these
        line("1", ints=["0x10", *["1"] * 12]),
        line("1", cats=["1234567 ", *CATS[1:]]),
        line("1", cats=["12 45678", *CATS[1:]]),
        line("2"),
        b"",
        line("1") + b"\t",
        line("1").replace(b"\t", b"\r", 1),
        line("1", cats=["\xe9" * 4, *CATS[1:]]),
    ],
)
def test_irregular_blocks_go_to_the_exact_path(bad):
    data = line("1") + b"\n" + bad + b"\n" + line("0") + b"\n"
    assert try_parse(data) is None
    parsed = parse_lines(data)
    assert parsed.reject_lines.tolist() == [1] and parsed.num_rows == 2


def test_a_short_line_of_non_utf8_bytes_takes_the_exact_path_quietly(monkeypatch):
    # The former pyarrow path decoded an invalid row as UTF-8 for its row handler;
    # random bytes made that raise inside pyarrow ("Exception ignored" on stderr).
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    data = line("1") + b"\n\xad\xff\x01\n" + line("0") + b"\n"
    assert try_parse(data) is None
    assert unraisable == []
    assert parse_lines(data).reject_lines.tolist() == [1]


def test_long_integers_short_hex_and_unlabeled_rows_decode_like_the_slow_path():
    ints = ["123456789012345678", "-42", "", *["7"] * 10]
    rows = [line("1", ints=ints, cats=["0", "ffffffff", *CATS[2:]]), line("0")]
    data = b"\n".join(rows) + b"\n"
    assert_same(try_parse(data), parse_block(data))
    unlabeled = b"\n".join(r.split(b"\t", 1)[1] for r in rows)
    assert_same(try_parse(unlabeled, labeled=False), parse_block(unlabeled, labeled=False))


@pytest.mark.parametrize(
    "bad",
    [
        line("1", ints=["1234567890123456789", *["1"] * 12]),  # 19 digits: over int64 range
        line("1", cats=["123456789", *CATS[1:]]),
        line("1", cats=["1\x0034567", *CATS[1:]]),
        line("1", cats=["1234\r678", *CATS[1:]]),
    ],
)
def test_fields_beyond_the_decoders_take_the_exact_path(bad):
    data = line("0") + b"\n" + bad + b"\n"
    assert try_parse(data) is None
    assert parse_lines(data).reject_lines.tolist() == [1]


def test_an_empty_block_has_no_rows():
    assert parse_lines(b"").num_rows == 0
