from pathlib import Path

import numpy as np
import pytest

from preproc.parse import parse_block
from preproc.schema import REASONS
from tests.preproc.helpers import LABELED_SAMPLES, sample

CATS = [f"{i * 2654435761 % 2**32:08x}" for i in range(26)]


def line(label="1", ints=None, cats=None, sep="\t") -> bytes:
    ints = ["1"] * 13 if ints is None else ints
    cats = CATS if cats is None else cats
    return sep.join([label, *ints, *cats]).encode()


def reasons(parsed) -> list[str]:
    return [REASONS[c] for c in parsed.reject_codes]


@pytest.mark.parametrize("name", LABELED_SAMPLES)
def test_every_sample_row_is_accepted(name):
    data = Path(sample(name)).read_bytes()
    parsed = parse_block(data)
    assert parsed.num_lines == data.count(b"\n")
    assert parsed.num_rows == parsed.num_lines
    assert parsed.reject_lines.size == 0


def test_values_decode_exactly():
    ints = ["", "-2", "0", "123456789012", "7", "-17", "", "", "", "", "", "", "99"]
    cats = ["68fd1e64", "", "FFFFFFFF", "1", "abCD", *CATS[5:]]
    parsed = parse_block(line("1", ints, cats) + b"\n" + line("0") + b"\n")
    assert parsed.reject_lines.size == 0
    assert parsed.labels.tolist() == [1, 0]
    expected = [0, -2, 0, 123456789012, 7, -17, 0, 0, 0, 0, 0, 0, 99]
    assert parsed.integers[0].tolist() == expected
    assert parsed.integer_missing[0].tolist() == [v == "" for v in ints]
    assert parsed.categorical[0, :5].tolist() == [0x68FD1E64, 0, 0xFFFFFFFF, 1, 0xABCD]
    assert parsed.categorical_missing[0, :5].tolist() == [False, True, False, False, False]
    assert parsed.categorical[0, 5:].tolist() == [int(c, 16) for c in CATS[5:]]


def test_crlf_and_missing_final_newline_match_lf():
    lines = [line("1"), line("0", cats=[""] * 26)]
    lf = parse_block(b"\n".join(lines) + b"\n")
    crlf = parse_block(b"\r\n".join(lines))
    assert crlf.reject_lines.size == 0
    for name in ("labels", "integers", "categorical", "categorical_missing"):
        np.testing.assert_array_equal(getattr(lf, name), getattr(crlf, name))


@pytest.mark.parametrize(
    ("bad", "reason", "field"),
    [
        (line("2"), "bad_label", "label"),
        (line(""), "bad_label", "label"),
        (line("1", ints=["1.5"] + ["1"] * 12), "bad_integer", "I1"),
        (line("1", ints=["1"] * 12 + ["-"]), "bad_integer", "I13"),
        (line("1", ints=["1"] * 12 + ["+3"]), "bad_integer", "I13"),
        (line("1", ints=["1"] * 12 + ["9" * 19]), "bad_integer", "I13"),
        (line("1", cats=[*CATS[:25], "xyz"]), "bad_categorical", "C26"),
        (line("1", cats=["123456789", *CATS[1:]]), "bad_categorical", "C1"),
        (line("1", cats=[*CATS[:3], "12 4", *CATS[4:]]), "bad_categorical", "C4"),
        (line("1") + b"\t", "field_count", None),
        (b"\t".join(line("1").split(b"\t")[:38]), "field_count", None),
        (b"", "empty_line", None),
        (b"\r", "empty_line", None),
    ],
)
def test_bad_lines_are_rejected_with_reason(bad, reason, field):
    data = line("1") + b"\n" + bad + b"\n" + line("0") + b"\n"
    parsed = parse_block(data)
    assert parsed.num_lines == 3
    assert parsed.num_rows == 2 and parsed.labels.tolist() == [1, 0]
    assert parsed.reject_lines.tolist() == [1]
    assert reasons(parsed) == [reason]
    assert parsed.reject_raw == [bad]
    if field:
        assert f"({field})" in parsed.reject_details[0]


def test_unlabeled_layout():
    data = Path(sample("kaggle_test_head_unlabeled.tsv")).read_bytes()
    assert parse_block(data, labeled=True).num_rows == 0
    parsed = parse_block(data, labeled=False)
    assert parsed.num_rows == 300 and not parsed.labels.any()
    first = data.split(b"\n", 1)[0].split(b"\t")
    assert parsed.categorical[0, 0] == int(first[13], 16)


def test_empty_block():
    parsed = parse_block(b"")
    assert parsed.num_lines == 0 and parsed.num_rows == 0
