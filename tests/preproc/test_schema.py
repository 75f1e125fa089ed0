"""``python -m preproc --schema``: CSV with a header, quoted fields, string ids, floats with
missing values and a multi-hot column, decoded against a pure-Python reference."""

from __future__ import annotations

import csv
import json
import math
import random
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from models.data.feature_spec import PAD_ID, read_feature_spec
from preproc.cli import build_parser, config_from_args, main
from preproc.pipeline import run
from tests.preproc.helpers import tree_bytes

SCHEMA = {
    "format": "csv",
    "header": True,
    "columns": [
        {"name": "price", "role": "numerical"},
        {"name": "clicked", "role": "label"},
        {"name": "score", "role": "numerical", "transform": "none"},
        {"name": "user", "role": "categorical"},
        {"name": "item", "role": "categorical", "frequency_threshold": 3},
        {"name": "tags", "role": "multi_hot", "separator": "|", "hotness": 3},
    ],
}
HEADER = "price,clicked,score,user,item,tags"
BAD_LINES = [
    ("1,x,1,bob,plain,a", "bad_label"),
    ("abc,1,1,bob,plain,a", "bad_numerical"),
    ("1,1,nan,bob,plain,a", "bad_numerical"),
    ("1,1,1,bob", "field_count"),
    ('1,1,1,"bob,plain,a', "unclosed_quote"),
    ('1,1,1,"bo"b,plain,a', "bad_quote"),
    ("", "empty_line"),
]
USERS = ["alice", "bob", "carol", "émile", "d,ave", 'say "hi"', ""]
ITEMS = ["Book, Vol. 1", "plain", "x", "rare1", "rare2", ""]
TAGS = ["a", "b", "c", "d", "e,f"]


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"') else value


def _write_input(path: Path, rows: int, seed: int) -> list[tuple[int, str]]:
    """A CSV of ``rows`` good lines with the bad lines spread in; returns the bad
    lines' (line number, reason)."""
    rng = random.Random(seed)
    lines, bad = [HEADER], []
    for i in range(rows):
        if i % 37 == 5:
            text, reason = BAD_LINES[(i // 37) % len(BAD_LINES)]
            lines.append(text)
            bad.append((len(lines), reason))
        price = rng.choice(["", str(rng.randint(-5, 500)), f"{rng.uniform(-2, 90):.3f}"])
        score = rng.choice(["", f"{rng.uniform(0, 1):.4f}", "1e1"])
        tags = "|".join(rng.choice(TAGS) for _ in range(rng.randint(0, 5)))
        if rng.random() < 0.1:
            tags = "|" + tags + "||"  # empty elements are dropped
        fields = [price, str(rng.randint(0, 1)), score, rng.choice(USERS), rng.choice(ITEMS)]
        lines.append(",".join(_quote(f) for f in [*fields, tags]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bad


class CrashError(Exception):
    pass


def _key(value: str) -> int:
    return zlib.crc32(value.encode("utf-8"))


def _ids(values: list[str], threshold: int) -> dict[str, int]:
    counts = Counter(values)
    kept = [v for v, n in counts.items() if n >= max(threshold, 1)]
    kept.sort(key=lambda v: (-counts[v], _key(v)))
    return {v: i + 1 for i, v in enumerate(kept)}


def _reference(path: Path) -> dict:
    """Straightforward per-line Python of what the schema says."""
    rows = []
    for line in path.read_text(encoding="utf-8").split("\n")[1:-1]:
        try:
            fields = next(csv.reader([line], strict=True))
        except (csv.Error, StopIteration):
            continue
        if len(fields) != 6 or fields[1] not in ("0", "1"):
            continue
        try:
            numbers = [
                float(fields[0]) if fields[0] else None,
                float(fields[2]) if fields[2] else None,
            ]
        except ValueError:
            continue
        if any(v is not None and not math.isfinite(v) for v in numbers):
            continue
        tags = [t for t in fields[5].split("|") if t]
        rows.append((int(fields[1]), numbers, fields[3], fields[4], tags[:3], len(tags) > 3))
    users = _ids([r[2] for r in rows if r[2]], 0)
    items = _ids([r[3] for r in rows if r[3]], 3)
    tags = _ids([t for r in rows for t in r[4]], 0)
    log3 = [
        np.float16(np.float32(math.log(v + 3))) if v is not None and v > -3 else 0
        for v, _ in (r[1] for r in rows)
    ]
    plain = [np.float16(np.float32(s)) if s is not None else 0 for _, s in (r[1] for r in rows)]
    return {
        "label": np.array([r[0] for r in rows], bool),
        "numerical": np.array(list(zip(log3, plain, strict=True)), np.float16),
        "user": np.array([users.get(r[2], 0) for r in rows]),
        "item": np.array([items.get(r[3], 0) for r in rows]),
        "tags": np.array(
            [[tags.get(t, 0) for t in r[4]] + [PAD_ID] * (3 - len(r[4])) for r in rows]
        ),
        "cardinalities": [len(users) + 1, len(items) + 1, len(tags) + 1],
        "truncated": sum(r[5] for r in rows),
    }


def _preprocess(tmp_path: Path, data: Path, out: str, *extra: str) -> int:
    schema = tmp_path / "schema.yaml"
    if not schema.exists():
        schema.write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    return main(
        [
            "--schema",
            str(schema),
            "--input_files",
            str(data),
            "--output_dir",
            str(tmp_path / out),
            "--no_shuffle",
            "--test_fraction",
            "0",
            *extra,
        ]
    )


def test_schema_input_decodes_exactly_as_the_reference(tmp_path, capsys):
    data = tmp_path / "clicks.csv"
    bad = _write_input(data, 400, seed=1)
    assert _preprocess(tmp_path, data, "out", "--num_workers", "1") == 0
    root = tmp_path / "out"
    spec = read_feature_spec(root)
    assert spec.channels == {
        "label": ("clicked",),
        "numerical": ("price", "score"),
        "categorical": ("user", "item", "tags"),
    }
    assert spec.hotness == (1, 1, 3)
    ref = _reference(data)
    assert list(spec.cardinalities) == ref["cardinalities"]
    n = len(ref["label"])
    assert spec.rows == {"train": n, "test": 0, "validation": 0}
    files = spec.split_files(root, "train")
    np.testing.assert_array_equal(np.fromfile(files.label, bool), ref["label"])
    numerical = np.fromfile(files.numerical, np.float16).reshape(n, 2)
    np.testing.assert_array_equal(numerical, ref["numerical"])
    dtypes = spec.categorical_dtypes
    for t, name in enumerate(["user", "item", "tags"]):
        ids = (
            np.fromfile(files.categorical[t], dtypes[t]).reshape(n, -1).squeeze(1 if t < 2 else ())
        )
        np.testing.assert_array_equal(ids, ref[name], err_msg=name)
    metadata = json.loads((root / "metadata.json").read_text())
    rejected = metadata["rows_rejected"]
    assert metadata["rows_read"] == n + sum(rejected.values()) == 400 + len(bad)
    assert sum(rejected.values()) == len(bad)
    assert rejected == {r: sum(1 for _, b in bad if b == r) for r in rejected}
    log = (root / "rejects.tsv").read_text().splitlines()[1:]
    assert [(int(x.split("\t")[1]), x.split("\t")[2]) for x in log] == bad
    assert all(x.split("\t")[0] == str(data) for x in log)
    assert metadata["multi_hot_truncated_rows"] == {"tags": ref["truncated"]} != {"tags": 0}
    assert "tags" in capsys.readouterr().out


def test_one_and_two_workers_and_a_resumed_run_write_the_same_bytes(tmp_path):
    data = tmp_path / "clicks.csv"
    _write_input(data, 600, seed=2)
    options = ["--unit_mb", "0.002"]  # ~2 KiB units: the header is in the first only
    shuffled = ["--seed", "3"]
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump(SCHEMA))
    base = ["--schema", str(schema), "--input_files", str(data), *options, *shuffled]
    assert main([*base, "--output_dir", str(tmp_path / "one"), "--num_workers", "1"]) == 0
    assert main([*base, "--output_dir", str(tmp_path / "two"), "--num_workers", "2"]) == 0
    reference = tree_bytes(tmp_path / "one")
    assert tree_bytes(tmp_path / "two") == reference

    def crash(step, index):
        if step == "transform" and index == 2:
            raise CrashError

    args = build_parser().parse_args(
        [*base, "--output_dir", str(tmp_path / "resumed"), "--num_workers", "1"]
    )
    with pytest.raises(CrashError):
        run(config_from_args(args), crash)
    assert not (tmp_path / "resumed" / "metadata.json").exists()
    run(config_from_args(args))
    assert tree_bytes(tmp_path / "resumed") == reference


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["columns"][3].update(role="dense"), "unknown role 'dense'"),
        (lambda s: s["columns"][4].update(name="user"), "duplicate column names ['user']"),
        (lambda s: s["columns"].pop(1), "exactly one column needs role label"),
        (lambda s: s["columns"][5].update(hotness=0), "(tags): hotness must be an int >= 2"),
        (lambda s: s.update(format="parquet"), "format must be one of"),
    ],
)
def test_invalid_schema_is_one_line_naming_the_file(tmp_path, capsys, edit, message):
    schema = json.loads(json.dumps(SCHEMA))
    edit(schema)
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema))
    data = tmp_path / "clicks.csv"
    _write_input(data, 10, seed=0)
    assert _preprocess(tmp_path, data, "out") == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{tmp_path / 'schema.yaml'}" in err and message in err, err


def test_header_that_disagrees_with_the_schema_names_file_and_schema(tmp_path, capsys):
    data = tmp_path / "clicks.csv"
    data.write_text("price,clicked,score,user,tags,item\n1,1,1,a,b,c\n")
    assert _preprocess(tmp_path, data, "out") == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{data}:1: the header" in err and "schema.yaml" in err, err


def test_rerun_is_a_no_op_and_another_schema_is_refused(tmp_path, capsys):
    data = tmp_path / "clicks.csv"
    _write_input(data, 20, seed=4)
    assert _preprocess(tmp_path, data, "out") == 0
    before = tree_bytes(tmp_path / "out")
    assert _preprocess(tmp_path, data, "out") == 0
    assert "already a complete dataset" in capsys.readouterr().out
    changed = json.loads(json.dumps(SCHEMA))
    changed["columns"][5]["hotness"] = 4
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(changed))
    assert _preprocess(tmp_path, data, "out") == 1
    assert "(differs in: schema)" in capsys.readouterr().err
    assert tree_bytes(tmp_path / "out") == before


def test_hash_buckets_bound_the_table_and_follow_the_crc(tmp_path):
    schema = {
        "format": "tsv",
        "header": False,
        "columns": [
            {"name": "y", "role": "label"},
            {"name": "u", "role": "categorical", "hash_buckets": 7},
            {"name": "t", "role": "multi_hot", "separator": ",", "hotness": 2, "hash_buckets": 3},
        ],
    }
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema))
    rng = random.Random(5)
    rows = [
        (
            rng.randint(0, 1),
            f"user{rng.randint(0, 99)}",
            [f"t{rng.randint(0, 9)}" for _ in range(rng.randint(0, 2))],
        )
        for _ in range(300)
    ]
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{y}\t{u}\t{','.join(t)}\n" for y, u, t in rows))
    assert _preprocess(tmp_path, data, "out", "--num_workers", "1") == 0
    spec = read_feature_spec(tmp_path / "out")
    files = spec.split_files(tmp_path / "out", "train")
    # Reference: bucket = CRC-32 mod N; buckets get ids by descending count, ties by bucket.
    user_count = Counter(_key(u) % 7 for _, u, _ in rows)
    tag_count = Counter(_key(t) % 3 for *_, ts in rows for t in ts)
    user_order = sorted(user_count, key=lambda b: (-user_count[b], b))
    tag_order = sorted(tag_count, key=lambda b: (-tag_count[b], b))
    assert spec.cardinalities == (len(user_count) + 1, len(tag_count) + 1)
    assert len(user_count) <= 7 < len({u for _, u, _ in rows})
    got_users = np.fromfile(files.categorical[0], spec.categorical_dtypes[0])
    got_tags = np.fromfile(files.categorical[1], spec.categorical_dtypes[1]).reshape(-1, 2)
    want_users = [user_order.index(_key(u) % 7) + 1 for _, u, _ in rows]
    want_tags = [
        [tag_order.index(_key(t) % 3) + 1 for t in ts] + [PAD_ID] * (2 - len(ts)) for *_, ts in rows
    ]
    np.testing.assert_array_equal(got_users, want_users)
    np.testing.assert_array_equal(got_tags, want_tags)
