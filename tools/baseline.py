"""A logistic-regression baseline on a binary dataset: the linear model to beat.

    python -m tools.baseline DATASET_DIR [--max_train_rows N] [--tune_fraction F]
                                         [--c_grid 0.01,0.1,1] [--crosses 4:23,7:17]
                                         [--json OUT]

Reads the ``train`` and ``test`` splits of the binary dataset through the
project's own reader (`models.data.binary.BinaryDataset`), so it sees exactly
the rows, ids and stored numericals a DLRM run trains and evaluates on. The
features are one indicator column per (table, id) -- a multi-hot row sets one
column per valid id -- plus the stored numericals standardised with the
training mean and deviation, in one sparse matrix. ``--crosses A:B,...`` adds,
for each pair of one-hot tables, one indicator per (id of A, id of B) pair
seen in train (a pair train never saw gets none): Wide & Deep's
cross-product features, the linear model told which crosses exist (on
generated rows, the ceiling of a model that knows the click model's form).
scikit-learn's
`LogisticRegression` (L2) is fitted on the first ``1 - F`` of the training rows
for every inverse regularisation strength ``C`` of the grid; the ``C`` with the
best AUC on the last ``F`` of them (the tuning slice) is refitted on all
training rows and scored on ``test``.

The test AUC is computed twice, by the project's exact AUC
(`models.training.auc.roc_auc`, what training reports) and by scikit-learn's
``roc_auc_score``; both are printed and must agree (exit status 1 otherwise).
A DLRM that does not beat this AUC on the same dataset has not learned more
than per-id click rates. Errors are one line ``tools.baseline: ...`` with exit
status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from models.data import feature_spec as fs
from models.data.binary import BinaryDataset
from models.data.metadata import DatasetError, load_metadata
from models.training.auc import roc_auc

DEFAULT_C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# Two AUC implementations over the same float64 scores differ by rounding only.
AUC_AGREEMENT = 1e-9


@dataclasses.dataclass(frozen=True)
class Split:
    """One split as model inputs: ids ``[n, C]`` (padded with -1), numericals, labels."""

    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    """What the baseline measured (JSON-ready)."""

    test_auc: float
    test_auc_sklearn: float
    best_c: float
    tuning_aucs: dict[str, float]
    train_rows: int
    test_rows: int
    features: int
    seconds: float
    crosses: list[list[int]] = dataclasses.field(default_factory=list)


def read_split(root: str | Path, split: str, max_rows: int | None = None) -> Split:
    """All rows of ``split`` (the first ``max_rows``) in file order, via `BinaryDataset`."""
    meta = load_metadata(root)
    rows = meta.split_rows(split)
    if max_rows is not None:
        rows = min(rows, max_rows)
    if rows == 0:
        raise DatasetError(f"{root}: the {split!r} split has no rows")
    data = BinaryDataset(root, split, global_batch_size=rows, metadata=meta)
    numerical, categorical, labels = data.read_batch(0)
    return Split(categorical, numerical.astype(np.float64), labels.reshape(-1))


def one_hot(categorical: np.ndarray, hotness: Sequence[int], cardinalities: Sequence[int]):
    """``[n, sum(cardinalities)]`` CSR indicators of every valid id (padding skipped)."""
    offsets = np.concatenate([[0], np.cumsum(cardinalities)])
    column_table = np.repeat(np.arange(len(hotness)), hotness)
    ids = categorical.astype(np.int64)
    valid = ids >= 0  # multi-hot padding is fs.PAD_ID = -1
    rows = np.broadcast_to(np.arange(ids.shape[0])[:, None], ids.shape)[valid]
    columns = (ids + offsets[column_table][None, :])[valid]
    values = np.ones(columns.size, np.float64)
    shape = (ids.shape[0], int(offsets[-1]))
    # Duplicates (an id twice in one multi-hot row) are summed, as a sum combiner would.
    return sp.csr_matrix((values, (rows, columns)), shape=shape)


def check_crosses(crosses: Sequence[tuple[int, int]], hotness: Sequence[int]) -> None:
    """Each pair names two different one-hot tables of the dataset."""
    for a, b in crosses:
        for table in (a, b):
            if not 0 <= table < len(hotness):
                raise ValueError(
                    f"--crosses {a}:{b}: table {table} is not one of the dataset's "
                    f"{len(hotness)} tables (0..{len(hotness) - 1})"
                )
            if hotness[table] != 1:
                raise ValueError(
                    f"--crosses {a}:{b}: table {table} is multi-hot (hotness "
                    f"{hotness[table]}); only one-hot tables can be crossed"
                )
        if a == b:
            raise ValueError(f"--crosses {a}:{b}: a table is not crossed with itself")


def cross_keys(
    categorical: np.ndarray, pair: tuple[int, int], hotness: Sequence[int], cardinalities
) -> np.ndarray:
    """``id_a * cardinality_b + id_b`` per row of two one-hot tables.

    A table's column in ``categorical`` is the sum of the hotness of the
    tables before it (a multi-hot table takes several columns).
    """
    a, b = pair
    column = np.concatenate([[0], np.cumsum(hotness)])
    ids_a = categorical[:, column[a]].astype(np.int64)
    return ids_a * int(cardinalities[b]) + categorical[:, column[b]]


def cross_indicators(keys: np.ndarray, seen: np.ndarray):
    """``[n, len(seen)]`` CSR: a 1 at the position of each row's key in ``seen``
    (sorted, not empty: the keys of the training rows)."""
    position = np.minimum(np.searchsorted(seen, keys), seen.size - 1)
    found = seen[position] == keys
    rows = np.flatnonzero(found)
    values = np.ones(rows.size, np.float64)
    return sp.csr_matrix((values, (rows, position[found])), shape=(keys.size, seen.size))


def _design(split: Split, hotness, cardinalities, mean, std, crosses=(), seen=()):
    numerical = (split.numerical - mean) / std
    blocks = [one_hot(split.categorical, hotness, cardinalities), sp.csr_matrix(numerical)]
    for pair, pair_seen in zip(crosses, seen, strict=True):
        keys = cross_keys(split.categorical, pair, hotness, cardinalities)
        blocks.append(cross_indicators(keys, pair_seen))
    return sp.hstack(blocks).tocsr()


def _fit(x, y, c: float, seed: int) -> LogisticRegression:
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=2000, random_state=seed)
    return model.fit(x, y)


def run_baseline(
    root: str | Path,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    tune_fraction: float = 0.2,
    max_train_rows: int | None = None,
    seed: int = 0,
    crosses: Sequence[tuple[int, int]] = (),
) -> BaselineResult:
    """Tunes ``C`` on a slice of train, refits on all of train, scores test.

    ``crosses``: pairs of one-hot tables whose id pairs become features too.
    """
    if not 0 < tune_fraction < 1:
        raise ValueError(f"--tune_fraction must be in (0, 1), got {tune_fraction}")
    if not c_grid or any(c <= 0 for c in c_grid):
        raise ValueError(f"--c_grid must hold positive values, got {list(c_grid)}")
    start = time.perf_counter()
    meta = load_metadata(root)
    spec = meta.spec
    train = read_split(root, "train", max_train_rows)
    test = read_split(root, "test")
    for name, split in (("train", train), ("test", test)):
        positives = int(split.labels.sum())
        if positives in (0, split.labels.size):
            raise DatasetError(f"{root}: the {name!r} labels are all of one class")
    mean = train.numerical.mean(axis=0) if train.numerical.size else 0.0
    std = np.maximum(train.numerical.std(axis=0), 1e-6) if train.numerical.size else 1.0
    hotness, cardinalities = spec.hotness, spec.cardinalities
    check_crosses(crosses, hotness)
    seen = [np.unique(cross_keys(train.categorical, p, hotness, cardinalities)) for p in crosses]
    x_train = _design(train, hotness, cardinalities, mean, std, crosses, seen)
    x_test = _design(test, hotness, cardinalities, mean, std, crosses, seen)

    # Tune on the last rows of train (preproc shuffles rows, so a tail is a fair sample).
    cut = round(train.labels.size * (1 - tune_fraction))
    y_fit, y_tune = train.labels[:cut], train.labels[cut:]
    if len(set(y_fit.tolist())) < 2 or len(set(y_tune.tolist())) < 2:
        raise DatasetError(f"{root}: too few training rows to tune on a slice (one class)")
    tuning = {}
    for c in c_grid:
        model = _fit(x_train[:cut], y_fit, c, seed)
        tuning[f"{c:g}"] = roc_auc(y_tune, model.decision_function(x_train[cut:]))
    best_c = float(max(c_grid, key=lambda c: tuning[f"{c:g}"]))
    model = _fit(x_train, train.labels, best_c, seed)
    scores = model.decision_function(x_test)
    return BaselineResult(
        test_auc=float(roc_auc(test.labels, scores)),
        test_auc_sklearn=float(roc_auc_score(test.labels, scores)),
        best_c=best_c,
        tuning_aucs={k: float(v) for k, v in tuning.items()},
        train_rows=int(train.labels.size),
        test_rows=int(test.labels.size),
        features=int(x_train.shape[1]),
        seconds=time.perf_counter() - start,
        crosses=[[int(a), int(b)] for a, b in crosses],
    )


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _pairs(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in (p for p in text.split(",") if p):
        parts = item.split(":")
        try:
            a, b = (int(v) for v in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected table pairs A:B separated by commas (e.g. 4:23,7:17), got {item!r}"
            ) from None
        pairs.append((a, b))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.baseline", description=__doc__)
    parser.add_argument("dataset", help="binary dataset directory (train and test splits)")
    parser.add_argument("--c_grid", type=_floats, default=list(DEFAULT_C_GRID))
    parser.add_argument("--tune_fraction", type=float, default=0.2)
    parser.add_argument("--max_train_rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--crosses",
        type=_pairs,
        default=[],
        help="pairs of one-hot tables (0-based, as cat_N) whose id pairs become features too",
    )
    parser.add_argument("--json", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        result = run_baseline(
            args.dataset,
            args.c_grid,
            args.tune_fraction,
            args.max_train_rows,
            args.seed,
            args.crosses,
        )
    except (DatasetError, ValueError, OSError) as error:
        print(f"tools.baseline: {error}", file=sys.stderr)
        return 2
    tuned = ", ".join(f"C={c}: {auc:.4f}" for c, auc in result.tuning_aucs.items())
    print(
        f"logistic regression on {result.train_rows} train rows, {result.features} features "
        f"(one-hot ids + {fs.NUMERICAL_DTYPE.name} numericals{_crossed(result.crosses)})\n"
        f"tuning-slice AUC: {tuned}; chosen C={result.best_c:g}\n"
        f"test AUC {result.test_auc:.6f} on {result.test_rows} rows "
        f"(exact AUC check: sklearn roc_auc_score {result.test_auc_sklearn:.6f}, "
        f"difference {abs(result.test_auc - result.test_auc_sklearn):.1e}) "
        f"in {result.seconds:.1f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    if abs(result.test_auc - result.test_auc_sklearn) > AUC_AGREEMENT:
        print("tools.baseline: the exact AUC disagrees with scikit-learn's", file=sys.stderr)
        return 1
    return 0


def _crossed(crosses: list[list[int]]) -> str:
    if not crosses:
        return ""
    return " + id pairs of tables " + ", ".join(f"{a}:{b}" for a, b in crosses)


if __name__ == "__main__":
    sys.exit(main())
