import gzip
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from preproc.parse import parse_block
from tools.generate_criteo import (
    CRITEO_CARDINALITIES,
    CROSS_PAIRS,
    CROSS_WEIGHT,
    SIGNAL_TABLES,
    cardinalities,
    click_logit,
    cross_effect,
    day_rows,
    effect,
    format_rows,
    generate,
    main,
)


def parse_all(paths):
    return [parse_block(Path(p).read_bytes()) for p in paths]


def test_days_rows_and_format(tmp_path):
    paths = generate(str(tmp_path), 20_001, 3, seed=4)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["day_0", "day_1", "day_2"]
    blocks = parse_all(paths)
    assert [b.num_rows for b in blocks] == [6667, 6667, 6667] == day_rows(20_001, 3)
    assert all(b.reject_lines.size == 0 for b in blocks)  # every line is valid Criteo TSV
    ints = np.concatenate([b.integers for b in blocks])
    int_missing = np.concatenate([b.integer_missing for b in blocks])
    cat_missing = np.concatenate([b.categorical_missing for b in blocks])
    assert (ints[:, 1] < 0).mean() > 0.05 and (ints[:, [0, *range(2, 13)]] >= 0).all()
    assert 0.35 < int_missing[:, 0].mean() < 0.55 and not int_missing[:, 1].any()
    assert 0.7 < cat_missing[:, 21].mean() < 0.82 and not cat_missing[:, 0].any()


def test_labels_follow_the_documented_function(tmp_path):
    (path,) = generate(str(tmp_path), 30_000, 0, seed=1)
    assert path.endswith("train.txt")
    (block,) = parse_all([path])
    rate = block.labels.mean()
    assert 0.15 < rate < 0.4
    logit = click_logit(
        block.integers, block.integer_missing, block.categorical, block.categorical_missing
    )
    assert roc_auc_score(block.labels, logit) > 0.7
    # and the label depends on both kinds of features
    no_cats = click_logit(
        block.integers,
        block.integer_missing,
        block.categorical,
        np.ones_like(block.categorical_missing),
    )
    assert roc_auc_score(block.labels, no_cats) < roc_auc_score(block.labels, logit) - 0.05


def test_power_law_and_scaled_cardinalities(tmp_path):
    (path,) = generate(str(tmp_path), 40_000, 0, seed=2)
    (block,) = parse_all([path])
    values, counts = np.unique(block.categorical[:, 0], return_counts=True)
    assert values.size <= cardinalities(40_000)[0]
    top = np.sort(counts)[::-1]
    assert top[0] > 50 * np.median(counts)  # a few values dominate, most are rare
    assert cardinalities(4 * 10**9) == list(CRITEO_CARDINALITIES)
    assert min(cardinalities(10)) == 2


def test_seed_determinism_and_gzip(tmp_path):
    a = generate(str(tmp_path / "a"), 5000, 2, seed=9)
    b = generate(str(tmp_path / "b"), 5000, 2, seed=9, compress=True)
    c = generate(str(tmp_path / "c"), 5000, 2, seed=10)
    for plain, packed in zip(a, b, strict=True):
        assert packed.endswith(".gz")
        assert Path(plain).read_bytes() == gzip.decompress(Path(packed).read_bytes())
    assert Path(a[0]).read_bytes() != Path(c[0]).read_bytes()


def test_format_rows_exact_text():
    text = format_rows(
        np.array([1], np.uint8),
        np.array([[0, -3, 1234567890, *[7] * 10]], np.int64),
        np.array([[False, False, False, True, *[False] * 9]]),
        np.array([[0x0000ABCD, 0xFFFFFFFF, *[1] * 24]], np.uint32),
        np.array([[False, True, *[False] * 24]]),
    )
    fields = text.decode().rstrip("\n").split("\t")
    assert fields[:5] == ["1", "0", "-3", "1234567890", ""]
    assert fields[14:17] == ["0000abcd", "", "00000001"] and len(fields) == 40


def test_cli(tmp_path, capsys):
    assert main(["--output_dir", str(tmp_path), "--num_rows", "100", "--num_days", "2"]) == 0
    assert "wrote 100 rows in 2 file(s)" in capsys.readouterr().out
    assert main(["--output_dir", str(tmp_path), "--num_rows", "0"]) == 1


def test_more_days_than_rows_is_refused(tmp_path, capsys):
    assert main(["--output_dir", str(tmp_path), "--num_rows", "3", "--num_days", "5"]) != 0
    assert "3 rows cannot fill 5 day files" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_default_output_is_pinned_byte_for_byte(tmp_path):
    """The quick start's data (and its AUC) must not move when options are added."""
    import hashlib

    paths = generate(str(tmp_path), 3000, 2, seed=5)
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    assert digests == [
        "0d0cd1f9ee345647f0729effeeeb79202718b3e05348ae2682867dba1fc46c0f",
        "800b5c706ef553e6243085485cfbdc5223ad665da04e8270bed8e1f707f8f89f",
    ]


def test_crosses_multiply_per_value_factors_into_the_logit(tmp_path):
    (path,) = generate(str(tmp_path / "plain"), 20_000, 0, seed=3)
    aucs = {}
    (crossed,) = generate(str(tmp_path / "crossed"), 20_000, 0, seed=3, crosses=2, true_auc=aucs)
    plain, block = parse_all([path, crossed])
    # Same rows, other labels: the crosses draw nothing from the stream.
    np.testing.assert_array_equal(plain.categorical, block.categorical)
    assert (plain.labels != block.labels).any()
    args = (block.integers, block.integer_missing, block.categorical, block.categorical_missing)
    expected = click_logit(*args)
    for a, b in CROSS_PAIRS[:2]:
        factor = effect(block.categorical[:, a]) * cross_effect(block.categorical[:, b])
        missing = block.categorical_missing[:, a] | block.categorical_missing[:, b]
        expected = expected + CROSS_WEIGHT * np.where(missing, 0.0, factor)
    np.testing.assert_allclose(click_logit(*args, crosses=2), expected)
    # The reported ceiling is the AUC of that logit; the model without crosses scores less.
    assert abs(aucs["all"] - roc_auc_score(block.labels, expected)) < 1e-4  # float32 logits
    assert roc_auc_score(block.labels, expected) > roc_auc_score(block.labels, click_logit(*args))
    # Pairs 0 and 1 join tables without a main effect: their ids alone tell nothing.
    assert not {a for pair in CROSS_PAIRS[:2] for a in pair} & set(SIGNAL_TABLES)


def test_cli_prints_the_true_auc_and_refuses_unknown_crosses(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert (
        main(["--output_dir", out, "--num_rows", "2000", "--num_days", "0", "--crosses", "1"]) == 0
    )
    printed = capsys.readouterr().out
    assert "true AUC (true click probability against the drawn labels, 1 cross(es)): 0." in printed
    assert "over the last 20%" in printed
    assert main(["--output_dir", out, "--num_rows", "10", "--crosses", "9"]) == 1
    assert "--crosses must be in 0..4, got 9" in capsys.readouterr().err
