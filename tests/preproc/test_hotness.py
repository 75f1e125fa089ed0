"""A multi-hot column's hotness: measured by pass 1 (the longest list), capped by
``max_hotness``, fixed by ``hotness``; recorded, identical for any worker count and
after a resumed run."""

from __future__ import annotations

import json
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
from preproc.user_schema import MIN_MULTI_HOT, SchemaColumn, SchemaError, parse_schema
from tests.preproc.helpers import tree_bytes

LONGEST = 9  # the longest list of the generated input, on its third row


def _schema(**tags: object) -> dict:
    """The issue's example: ``tags`` without hotness unless ``tags`` adds keys."""
    return {
        "format": "csv",
        "header": True,
        "columns": [
            {"name": "clicked", "role": "label"},
            {"name": "user", "role": "categorical"},
            {"name": "tags", "role": "multi_hot", "separator": "|", **tags},
        ],
    }


def _lists(rows: int, seed: int) -> list[list[str]]:
    """Tag lists of 0..4 values (a few duplicates, some empty), one of ``LONGEST``."""
    rng = random.Random(seed)
    lists = [[f"t{rng.randint(0, 7)}" for _ in range(rng.randint(0, 4))] for _ in range(rows)]
    lists[2] = [f"t{i % 6}" for i in range(LONGEST)]  # t0..t5, then t0..t2 again
    return lists


def _write(path: Path, lists: list[list[str]]) -> None:
    lines = ["clicked,user,tags"]
    for i, tags in enumerate(lists):
        # Empty items (leading, doubled or trailing separators) are not values.
        text = "|".join(tags) if i % 5 else "|" + "||".join(tags) + "|"
        lines.append(f"{i % 2},u{i % 7},{text}")
    path.write_text("\n".join(lines) + "\n")


def _preprocess(tmp_path: Path, schema: dict, data: Path, out: str, *extra: str) -> Path:
    path = tmp_path / f"{out}.schema.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    args = ["--schema", str(path), "--input_files", str(data), "--output_dir", str(tmp_path / out)]
    assert main([*args, "--no_shuffle", "--test_fraction", "0", *extra]) == 0
    return tmp_path / out


def _expected_tags(lists: list[list[str]], kept: int, width: int) -> np.ndarray:
    """Ids of the first ``kept`` values of each list, padded to ``width``: values by
    descending count, ties by CRC-32 (threshold 0: every value kept)."""
    counts = Counter(t for tags in lists for t in tags[:kept])
    order = sorted(counts, key=lambda t: (-counts[t], zlib.crc32(t.encode())))
    ids = {t: i + 1 for i, t in enumerate(order)}
    return np.array(
        [[ids[t] for t in tags[:kept]] + [PAD_ID] * (width - len(tags[:kept])) for tags in lists]
    )


@pytest.mark.parametrize(
    ("keys", "hotness", "truncated", "chosen_by"),
    [
        ({}, LONGEST, 0, "longest_list"),
        ({"max_hotness": 20}, LONGEST, 0, "longest_list"),
        ({"max_hotness": 3}, 3, None, "max_hotness"),
        ({"hotness": 3}, 3, None, "hotness"),
        ({"hotness": 12}, 12, 0, "hotness"),  # a fixed width pads past the longest list
    ],
)
def test_hotness_is_the_longest_list_capped_or_fixed(
    tmp_path, capsys, keys, hotness, truncated, chosen_by
):
    lists = _lists(300, seed=1)
    data = tmp_path / "clicks.csv"
    _write(data, lists)
    root = _preprocess(tmp_path, _schema(**keys), data, "out", "--num_workers", "1")
    spec = read_feature_spec(root)
    assert spec.hotness == (1, hotness)
    kept = min(hotness, LONGEST)
    ids = np.fromfile(spec.split_files(root, "train").categorical[1], spec.categorical_dtypes[1])
    np.testing.assert_array_equal(ids.reshape(-1, hotness), _expected_tags(lists, kept, hotness))
    if truncated is None:
        truncated = sum(len(tags) > hotness for tags in lists)
        assert truncated > 1
    metadata = json.loads((root / "metadata.json").read_text())
    assert metadata["multi_hot_truncated_rows"] == {"tags": truncated}
    assert metadata["multi_hot_hotness"] == {
        "tags": {"hotness": hotness, "longest_list": LONGEST, "chosen_by": chosen_by}
    }
    summary = json.loads((root / "preproc_summary.json").read_text())
    assert summary["multi_hot_hotness"] == metadata["multi_hot_hotness"]
    assert metadata["schema"]["columns"][2] == {
        "name": "tags",
        "role": "multi_hot",
        "separator": "|",
        **keys,
    }
    printed = [line for line in capsys.readouterr().out.splitlines() if "multi-hot" in line]
    expected = f"multi-hot hotness: tags {hotness} "
    if chosen_by == "longest_list":
        expected += "(the longest list)"
    else:
        expected += f"({chosen_by}; longest list {LONGEST}"
        expected += f", {truncated} rows truncated)" if truncated else ")"
    assert printed == [expected]


@pytest.mark.parametrize("longest", [0, 1])
def test_lists_of_at_most_one_value_keep_room_for_padding(tmp_path, longest):
    lists = [["a"] if longest and i % 3 else [] for i in range(30)]
    data = tmp_path / "clicks.csv"
    _write(data, lists)
    root = _preprocess(tmp_path, _schema(), data, "out", "--num_workers", "1")
    spec = read_feature_spec(root)
    assert spec.hotness == (1, MIN_MULTI_HOT)
    ids = np.fromfile(spec.split_files(root, "train").categorical[1], spec.categorical_dtypes[1])
    np.testing.assert_array_equal(ids.reshape(-1, 2), _expected_tags(lists, 2, 2))
    metadata = json.loads((root / "metadata.json").read_text())
    assert metadata["multi_hot_hotness"]["tags"] == {
        "hotness": 2,
        "longest_list": longest,
        "chosen_by": "minimum",
    }


class CrashError(Exception):
    pass


@pytest.mark.parametrize("keys", [{}, {"max_hotness": 4}])
def test_any_worker_count_and_a_resumed_run_write_the_same_bytes(tmp_path, keys):
    lists = _lists(900, seed=2)
    data = tmp_path / "clicks.csv"
    _write(data, lists)
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump(_schema(**keys)))
    # ~2 KiB units: the longest list is in the first of several; shuffled into buckets.
    base = ["--schema", str(schema), "--input_files", str(data), "--unit_mb", "0.002"]
    base += ["--seed", "5", "--shuffle_bucket_rows", "200"]
    outputs = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"workers_{workers}"
        assert main([*base, "--output_dir", str(out), "--num_workers", str(workers)]) == 0
        outputs[workers] = tree_bytes(out)
    assert outputs[2] == outputs[1] == outputs[3]
    spec = read_feature_spec(tmp_path / "workers_1")
    assert spec.hotness == (1, keys.get("max_hotness", LONGEST))

    for step in ("count", "transform"):

        def crash(name, index, step=step):
            if name == step and index == 3:
                raise CrashError

        out = tmp_path / f"resumed_{step}"
        args = build_parser().parse_args([*base, "--output_dir", str(out), "--num_workers", "1"])
        with pytest.raises(CrashError):
            run(config_from_args(args), crash)
        assert (out / "_work" / "pass1" / "unit_000000.npz").exists()
        run(config_from_args(args))
        assert tree_bytes(out) == outputs[1], step


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"hotness": 0}, "columns[2] (tags): hotness must be an int >= 2"),
        ({"hotness": 1}, "columns[2] (tags): hotness must be an int >= 2"),
        ({"max_hotness": -3}, "columns[2] (tags): max_hotness must be an int >= 2"),
        ({"max_hotness": 2.5}, "columns[2] (tags): max_hotness must be an int >= 2"),
        ({"max_hotness": "4"}, "columns[2] (tags): max_hotness must be an int >= 2"),
        ({"hotness": True}, "columns[2] (tags): hotness must be an int >= 2"),
        ({"hotness": 3, "max_hotness": 5}, "columns[2] (tags): give hotness (a fixed width)"),
    ],
)
def test_bad_hotness_keys_name_the_column_and_the_key(keys, message):
    with pytest.raises(SchemaError, match=r"^s\.yaml: ") as error:
        parse_schema(_schema(**keys), "s.yaml")
    assert message in str(error.value), error.value
    assert "\n" not in str(error.value)


def test_max_hotness_does_not_apply_to_a_categorical_column():
    schema = _schema()
    schema["columns"][1]["max_hotness"] = 3
    with pytest.raises(SchemaError, match=r"columns\[1\] \(user\): keys \['max_hotness'\]"):
        parse_schema(schema, "s.yaml")


@pytest.mark.parametrize(
    ("keys", "longest", "expected"),
    [
        ({}, 7, (7, "longest_list")),
        ({}, 1, (2, "minimum")),
        ({}, 0, (2, "minimum")),
        ({"max_hotness": 5}, 7, (5, "max_hotness")),
        ({"max_hotness": 5}, 5, (5, "longest_list")),
        ({"max_hotness": 5}, 1, (2, "minimum")),
        ({"hotness": 4}, 7, (4, "hotness")),
        ({"hotness": 4}, 1, (4, "hotness")),
    ],
)
def test_hotness_rule(keys, longest, expected):
    column = SchemaColumn("tags", "multi_hot", "|", **{"hotness": None, **keys})
    assert column.hotness_for(longest) == expected
