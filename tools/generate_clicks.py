"""Generate a small click log as CSV with a header, and its preprocessing schema.

``python -m tools.generate_clicks --output FILE.csv --num_rows N [--seed S] [--max_tags K]
[--crosses P]``
writes ``FILE.csv`` and, beside it, ``FILE.schema.yaml`` for ``python -m preproc --schema``.

Columns: ``clicked`` (label), ``price`` and ``dwell`` (floats, missing in 10% and
25% of rows), ``user``, ``item`` and ``category`` (string ids; item names hold
commas, so they are quoted, and some hold ``"``), ``tags`` (0..K values joined
by ``|``; ``--max_tags 0`` leaves the column out). The schema gives ``tags`` no
hotness: preprocessing measures it (the longest list, K in all but tiny logs).

Users, items and tags are drawn Zipf-like (a few are frequent); the category is
a function of the item. Each user, item, category and tag has a hidden effect
~ N(0, 1) drawn from the seed, and

    logit = -1 + 0.8 user + 0.8 item + 0.5 category + 0.4 sum(tags)
            - 0.3 log1p(price) + 0.5 (dwell - 1)          (missing values: 0)

gives ``clicked`` ~ Bernoulli(sigmoid(logit)). A model that learns the effects
reaches an AUC clearly above 0.5 (the true logit gives about 0.8).

``--crosses P`` (1 or 2) adds the first P pairwise crosses of ``CROSSES``,
``+ CROSS_WEIGHT * f(a) * g(b)`` with per-value factors ~ N(0, 1) drawn from a
second stream of the seed (so the default output is byte-identical), a product
that embeddings can represent and one weight per id cannot. The tool prints the
true AUC (true click probability against the drawn labels) over all rows and
the last 10% and 20%.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from tools.generate_criteo import format_true_aucs, true_aucs

NUM_USERS, NUM_ITEMS, NUM_CATEGORIES, NUM_TAGS = 2000, 500, 20, 50
COLORS = ("red", "blue", 'the "classic" one', "green")
# --crosses: column pairs whose per-value factors multiply into the logit.
CROSSES = (("user", "category"), ("user", "item"))
CROSS_WEIGHT = 1.0


def _zipf(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Ranks 0..n-1 with P(r) ~ 1 / (r + 1) (continuous approximation)."""
    return np.minimum(np.floor((n + 1) ** rng.random(size)).astype(np.int64) - 1, n - 1)


def schema(max_tags: int) -> dict:
    columns = [
        {"name": "clicked", "role": "label"},
        {"name": "price", "role": "numerical", "transform": "log1p_clamp"},
        {"name": "dwell", "role": "numerical", "transform": "none"},
        {"name": "user", "role": "categorical"},
        {"name": "item", "role": "categorical"},
        {"name": "category", "role": "categorical"},
    ]
    if max_tags:
        columns.append({"name": "tags", "role": "multi_hot", "separator": "|"})
    return {"format": "csv", "header": True, "columns": columns}


def generate(
    path: str,
    num_rows: int,
    seed: int,
    max_tags: int,
    crosses: int = 0,
    true_auc: dict[str, float] | None = None,
) -> Path:
    """Writes the CSV and its schema; returns the schema's path.

    Args:
        crosses: pairwise crosses in the click model (the first of `CROSSES`).
        true_auc: filled with the true AUCs (`true_aucs`) when given.
    """
    if num_rows < 1:
        raise ValueError(f"--num_rows must be >= 1, got {num_rows}")
    if not 0 <= max_tags <= 20:
        raise ValueError(f"--max_tags must be in 0..20, got {max_tags}")
    if not 0 <= crosses <= len(CROSSES):
        raise ValueError(f"--crosses must be in 0..{len(CROSSES)}, got {crosses}")
    rng = np.random.default_rng(seed)
    effect = {
        "user": rng.normal(size=NUM_USERS),
        "item": rng.normal(size=NUM_ITEMS),
        "category": rng.normal(size=NUM_CATEGORIES),
        "tag": rng.normal(size=NUM_TAGS),
    }
    item_category = rng.integers(0, NUM_CATEGORIES, NUM_ITEMS)
    users = _zipf(rng, NUM_USERS, num_rows)
    items = _zipf(rng, NUM_ITEMS, num_rows)
    categories = item_category[items]
    price = np.round(np.exp(rng.normal(3, 1, num_rows)), 2)
    price_missing = rng.random(num_rows) < 0.10
    dwell = np.round(rng.gamma(2.0, 0.5, num_rows), 3)
    dwell_missing = rng.random(num_rows) < 0.25
    num_tags = rng.integers(0, max_tags + 1, num_rows)
    tags = _zipf(rng, NUM_TAGS, (num_rows, max(max_tags, 1)))
    has_tag = np.arange(max(max_tags, 1)) < num_tags[:, None]
    logit = (
        -1.0
        + 0.8 * effect["user"][users]
        + 0.8 * effect["item"][items]
        + 0.5 * effect["category"][categories]
        + 0.4 * (effect["tag"][tags] * has_tag).sum(axis=1)
        - 0.3 * np.where(price_missing, 0.0, np.log1p(price))
        + 0.5 * np.where(dwell_missing, 0.0, dwell - 1.0)
    )
    values = {"user": users, "item": items, "category": categories}
    sizes = {"user": NUM_USERS, "item": NUM_ITEMS, "category": NUM_CATEGORIES}
    cross_rng = np.random.default_rng([seed, 1])  # leaves the main stream as it was
    for a, b in CROSSES[:crosses]:
        f, g = cross_rng.normal(size=sizes[a]), cross_rng.normal(size=sizes[b])
        logit = logit + CROSS_WEIGHT * f[values[a]] * g[values[b]]
    clicked = rng.random(num_rows) < 1 / (1 + np.exp(-logit))
    if true_auc is not None:
        true_auc.update(true_aucs(clicked, logit))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = schema(max_tags)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([c["name"] for c in spec["columns"]])
        for r in range(num_rows):
            item = items[r]
            row = [
                int(clicked[r]),
                "" if price_missing[r] else f"{price[r]:g}",
                "" if dwell_missing[r] else f"{dwell[r]:g}",
                f"u{users[r]}",
                f"item {item}, {COLORS[item % len(COLORS)]}",
                f"cat_{categories[r]}",
            ]
            if max_tags:
                row.append("|".join(f"t{t}" for t in tags[r, : num_tags[r]]))
            writer.writerow(row)
    schema_path = out.with_suffix(".schema.yaml")
    schema_path.write_text(yaml.safe_dump(spec, sort_keys=False, default_flow_style=None))
    return schema_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.generate_clicks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", required=True, help="CSV file to write")
    parser.add_argument("--num_rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max_tags", type=int, default=5, help="tags per row at most (0: no tags column)"
    )
    parser.add_argument(
        "--crosses",
        type=int,
        default=0,
        help=f"pairwise crosses in the click model, 0..{len(CROSSES)}: {CROSSES}",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    aucs: dict[str, float] = {}
    try:
        schema_path = generate(
            args.output, args.num_rows, args.seed, args.max_tags, args.crosses, aucs
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(
        f"wrote {args.num_rows:,} rows to {args.output} and its schema to {schema_path} "
        f"in {seconds:.1f} s"
    )
    print(format_true_aucs(aucs, args.crosses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
