"""Generate Criteo-format TSV files with learnable labels.

``python -m tools.generate_criteo --output_dir DIR --num_rows N --num_days K --seed S [--gzip]
[--crosses P]``
writes ``DIR/day_0 .. day_{K-1}`` (rows spread evenly, earlier days get the
remainder), or ``DIR/train.txt`` (Kaggle layout) with ``--num_days 0``;
``--gzip`` appends ``.gz``.

Rows: label, 13 integers, 26 categoricals (8 lowercase hex digits), tab
separated, ``\\n`` line ends.

- Categorical column ``c`` has ``cardinality(c, N)`` possible values: the
  Criteo 1TB cardinalities at frequency threshold 15 scaled by ``N / 4e7``
  (at least 2, at most the Criteo value). The rank ``r`` of a value is drawn
  Zipf-like, ``r = floor((card + 1) ** u) - 1`` with ``u ~ U[0, 1)``, so
  ``P(r) ~ 1 / ((r + 1) ln(card + 1))``; the written value is
  ``(r * A_c + B_c) mod 2**32`` with per-column odd ``A_c`` (a bijection).
  Missing with a per-column probability (``CAT_MISSING``).
- Integer column ``j``: ``max(0, floor(exp(N(INT_MU[j], INT_SIGMA[j])) - 1))``; column
  I2 is negative (-1..-3) with probability 0.08 as in Criteo; missing with
  probability ``INT_MISSING[j]``.
- Label: Bernoulli(sigmoid(``click_logit``)) with
  ``logit = BIAS + sum_j INT_WEIGHT[j] * log1p(max(x_j, 0))``
  ``+ sum_{c in SIGNAL_TABLES} CAT_WEIGHT * effect(v_c)`` where
  ``effect(v) = ((v * 2654435761) mod 2**32 >> 16) / 32768 - 1`` (in [-1, 1))
  and missing values contribute 0. A model that learns these recovers an AUC
  well above 0.5 (the true logit gives about 0.75).
- ``--crosses P`` (1..4) adds the first P pairwise crosses of ``CROSS_PAIRS``:
  ``+ CROSS_WEIGHT * effect(v_a) * cross_effect(v_b)`` for each pair (a, b)
  (0 when either is missing), ``cross_effect`` a second hash in [-1, 1). A
  product of per-value factors is what a dot or cross interaction of
  embeddings represents, and what one weight per id cannot: the first two
  pairs join tables without any main effect, so a linear model gains
  nothing from them. Without ``--crosses`` the output is byte-identical to
  what it always was (no extra random draws).

The tool prints the true AUC: that of the true click probability against the
drawn labels, over all rows and over the last 10% and 20% (the test split of
``python -m preproc --test_fraction 0.1 / 0.2`` on ``train.txt``), the ceiling
any model of these rows can reach (computed up to ``TRUE_AUC_MAX_ROWS`` rows).
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import sys
import time

import numpy as np

from models.training.auc import roc_auc

NUM_INT, NUM_CAT = 13, 26
# Criteo 1TB table sizes at frequency threshold 15 (NVIDIA DLRM README).
CRITEO_CARDINALITIES = (
    7912889, 33823, 17139, 7339, 20046, 4, 7105, 1382, 63, 5554114, 582469, 245828, 11,
    2209, 10667, 104, 4, 968, 15, 8165896, 2675940, 7156453, 302516, 12022, 97, 35,
)  # fmt: skip
CAT_MISSING = (
    0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.03, 0.03, 0.0,
    0.0, 0.0, 0.03, 0.0, 0.0, 0.44, 0.44, 0.03, 0.76, 0.0, 0.03, 0.44, 0.44,
)  # fmt: skip
INT_MISSING = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22)
INT_MU = (0.5, 2.0, 1.5, 1.5, 7.0, 3.0, 1.2, 2.2, 3.5, 0.3, 0.8, 0.4, 1.5)
INT_SIGMA = (1.0, 1.8, 1.2, 1.0, 2.0, 1.6, 1.3, 1.1, 1.4, 0.6, 0.9, 0.8, 1.1)
INT_WEIGHT = (0.25, -0.05, 0.1, -0.2, -0.12, 0.08, 0.3, -0.1, 0.05, 0.4, 0.35, 0.2, -0.15)
SIGNAL_TABLES = (0, 2, 3, 6, 8, 12, 14, 16)
CAT_WEIGHT = 0.8
BIAS = -0.6
# --crosses: (a, b) table pairs; the first two join tables that have no main effect.
CROSS_PAIRS = ((4, 23), (7, 17), (2, 14), (3, 6))
CROSS_WEIGHT = 1.5
TRUE_AUC_MAX_ROWS = 20_000_000
SCALE_ROWS = 4e7
_MAX_INT = 10**9 - 1  # keeps every number within 10 digits
_INT_WIDTH = 11  # sign + 10 digits
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_CHUNK_ROWS = 100_000


def cardinalities(num_rows: int) -> list[int]:
    scale = min(1.0, num_rows / SCALE_ROWS)
    return [min(c, max(2, math.ceil(c * scale))) for c in CRITEO_CARDINALITIES]


def effect(values: np.ndarray) -> np.ndarray:
    mixed = (values.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    return (mixed >> np.uint64(16)).astype(np.float64) / 32768.0 - 1.0


def cross_effect(values: np.ndarray) -> np.ndarray:
    """A second per-value factor in [-1, 1), independent of `effect` (another multiplier)."""
    mixed = (values.astype(np.uint64) * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
    return (mixed >> np.uint64(16)).astype(np.float64) / 32768.0 - 1.0


def click_logit(
    integers: np.ndarray,
    integer_missing: np.ndarray,
    categorical: np.ndarray,
    categorical_missing: np.ndarray,
    crosses: int = 0,
) -> np.ndarray:
    """The documented label logit of rows ([n, 13] ints, [n, 26] uint32 values)."""
    x = np.where(integer_missing, 0, np.maximum(integers, 0)).astype(np.float64)
    logit = BIAS + np.log1p(x) @ np.asarray(INT_WEIGHT)
    for t in SIGNAL_TABLES:
        logit += CAT_WEIGHT * np.where(categorical_missing[:, t], 0.0, effect(categorical[:, t]))
    for a, b in CROSS_PAIRS[:crosses]:
        product = effect(categorical[:, a]) * cross_effect(categorical[:, b])
        missing = categorical_missing[:, a] | categorical_missing[:, b]
        logit += CROSS_WEIGHT * np.where(missing, 0.0, product)
    return logit


class CriteoGenerator:
    """Draws rows chunk by chunk from one seeded stream."""

    def __init__(self, num_rows: int, seed: int, crosses: int = 0) -> None:
        self.crosses = crosses
        self.rng = np.random.default_rng(seed)
        self.cards = np.array(cardinalities(num_rows), np.float64)
        self.multipliers = self.rng.integers(0, 2**31, NUM_CAT, dtype=np.uint64) * 2 + 1
        self.offsets = self.rng.integers(0, 2**32, NUM_CAT, dtype=np.uint64)

    def rows(self, n: int) -> tuple[np.ndarray, ...]:
        """(labels, integers, integer_missing, categorical, categorical_missing, logit)."""
        rng = self.rng
        ranks = np.floor((self.cards + 1) ** rng.random((n, NUM_CAT))) - 1
        ranks = np.minimum(ranks, self.cards - 1).astype(np.uint64)
        categorical = ((ranks * self.multipliers + self.offsets) & np.uint64(0xFFFFFFFF)).astype(
            np.uint32
        )
        categorical_missing = rng.random((n, NUM_CAT)) < np.asarray(CAT_MISSING)
        categorical[categorical_missing] = 0
        integers = np.floor(np.expm1(rng.normal(INT_MU, INT_SIGMA, (n, NUM_INT))))
        integers = np.clip(integers, 0, _MAX_INT).astype(np.int64)
        negative = rng.random(n) < 0.08
        integers[negative, 1] = -rng.integers(1, 4, int(negative.sum()))
        integer_missing = rng.random((n, NUM_INT)) < np.asarray(INT_MISSING)
        integers[integer_missing] = 0
        logit = click_logit(
            integers, integer_missing, categorical, categorical_missing, self.crosses
        )
        labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.uint8)
        return labels, integers, integer_missing, categorical, categorical_missing, logit


def _int_chars(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """[n, k, 11] right-aligned ASCII, 0 = no character."""
    magnitude = np.abs(values).astype(np.uint32)
    chars = np.zeros((*values.shape, _INT_WIDTH), np.uint8)
    num_digits = np.zeros(values.shape, np.int64)
    alive = np.ones(values.shape, bool)  # the number still has digits at this position
    for position in range(_INT_WIDTH - 1, 0, -1):
        chars[..., position] = np.where(alive, (magnitude % 10).astype(np.uint8) + 48, 0)
        num_digits += alive
        magnitude //= 10
        alive = magnitude > 0
    sign = np.where(values < 0, 45, 0).astype(np.uint8)
    np.put_along_axis(chars, (_INT_WIDTH - 1 - num_digits)[..., None], sign[..., None], -1)
    chars[missing] = 0
    return chars


def _hex_chars(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    shifts = np.arange(28, -1, -4, dtype=np.uint32)
    chars = _HEX[(values[..., None] >> shifts) & np.uint32(15)]
    return np.where(missing[..., None], 0, chars).astype(np.uint8)


def format_rows(
    labels: np.ndarray,
    integers: np.ndarray,
    integer_missing: np.ndarray,
    categorical: np.ndarray,
    categorical_missing: np.ndarray,
) -> bytes:
    """TSV lines, built as a byte matrix whose 0 bytes are dropped (no per-row Python)."""
    n = labels.size
    tab = np.full((n, 1), 9, np.uint8)
    parts = [(labels + 48).astype(np.uint8)[:, None], tab]
    ints = _int_chars(integers, integer_missing)
    for j in range(NUM_INT):
        parts += [ints[:, j], tab]
    cats = _hex_chars(categorical, categorical_missing)
    for t in range(NUM_CAT):
        parts += [cats[:, t], tab]
    parts[-1] = np.full((n, 1), 10, np.uint8)
    matrix = np.concatenate(parts, axis=1)
    return matrix[matrix != 0].tobytes()


def day_rows(num_rows: int, num_days: int) -> list[int]:
    days = max(num_days, 1)
    return [num_rows // days + (1 if i < num_rows % days else 0) for i in range(days)]


def true_aucs(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """AUC of the true logit against the drawn labels: all rows, the last 10% and 20%."""
    aucs = {}
    for name, fraction in (("all", 1.0), ("last_10pct", 0.1), ("last_20pct", 0.2)):
        tail = slice(labels.size - max(1, round(labels.size * fraction)), None)
        if 0 < labels[tail].sum() < labels[tail].size:  # undefined with one class
            aucs[name] = roc_auc(labels[tail], logits[tail])
    return aucs


def generate(
    output_dir: str,
    num_rows: int,
    num_days: int,
    seed: int,
    compress: bool = False,
    crosses: int = 0,
    true_auc: dict[str, float] | None = None,
) -> list[str]:
    """Writes the files and returns their paths.

    Args:
        crosses: pairwise crosses in the click model (the first of `CROSS_PAIRS`).
        true_auc: filled with `true_aucs` of the rows written, when given and
            ``num_rows <= TRUE_AUC_MAX_ROWS``.
    """
    if not 0 <= crosses <= len(CROSS_PAIRS):
        raise ValueError(f"--crosses must be in 0..{len(CROSS_PAIRS)}, got {crosses}")
    if num_rows < 1 or num_days < 0:
        raise ValueError(f"need num_rows >= 1 and num_days >= 0, got {num_rows}, {num_days}")
    if num_days > num_rows:
        raise ValueError(
            f"{num_rows} rows cannot fill {num_days} day files (one row each at least)"
        )
    os.makedirs(output_dir, exist_ok=True)
    names = ["train.txt"] if num_days == 0 else [f"day_{i}" for i in range(num_days)]
    generator = CriteoGenerator(num_rows, seed, crosses)
    keep = true_auc is not None and num_rows <= TRUE_AUC_MAX_ROWS
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    paths = []
    for name, rows in zip(names, day_rows(num_rows, num_days), strict=True):
        path = os.path.join(output_dir, name + (".gz" if compress else ""))
        tmp = path + ".tmp"
        with gzip.open(tmp, "wb", compresslevel=1) if compress else open(tmp, "wb") as f:
            for start in range(0, rows, _CHUNK_ROWS):
                *fields, logit = generator.rows(min(_CHUNK_ROWS, rows - start))
                f.write(format_rows(*fields))
                if keep:
                    drawn.append((fields[0], logit.astype(np.float32)))
        os.replace(tmp, path)
        paths.append(path)
    if keep:
        labels, logits = (np.concatenate(parts) for parts in zip(*drawn, strict=True))
        true_auc.update(true_aucs(labels, logits))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.generate_criteo", description=__doc__)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_rows", type=int, required=True)
    parser.add_argument("--num_days", type=int, default=1, help="day_N files; 0 writes train.txt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gzip", action="store_true", help="write .gz files")
    parser.add_argument(
        "--crosses",
        type=int,
        default=0,
        help=f"pairwise feature crosses in the click model, 0..{len(CROSS_PAIRS)} (0: none)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    aucs: dict[str, float] = {}
    try:
        paths = generate(
            args.output_dir,
            args.num_rows,
            args.num_days,
            args.seed,
            args.gzip,
            crosses=args.crosses,
            true_auc=aucs,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(
        f"wrote {args.num_rows:,} rows in {len(paths)} file(s) to {args.output_dir} "
        f"in {seconds:.1f} s ({args.num_rows / max(seconds, 1e-9):,.0f} rows/s)"
    )
    print(format_true_aucs(aucs, args.crosses))
    return 0


def format_true_aucs(aucs: dict[str, float], crosses: int) -> str:
    """The true-AUC line both generators print."""
    if "all" not in aucs:
        return f"true AUC not computed (more than {TRUE_AUC_MAX_ROWS:,} rows, or one class)"
    tails = ", ".join(
        f"{aucs[key]:.4f} over the last {pct}%"
        for key, pct in (("last_10pct", 10), ("last_20pct", 20))
        if key in aucs
    )
    return (
        f"true AUC (true click probability against the drawn labels, {crosses} cross(es)): "
        f"{aucs['all']:.4f} over all rows, {tails}"
    )


if __name__ == "__main__":
    sys.exit(main())
