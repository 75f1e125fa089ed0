"""A table split by rows across world sizes, through ``dlrm_main.main``.

Two ranks whose per-rank budget (``--tf_mlu_memory_limit_gb``) is smaller than
table 0 split it by rows. A run saved at ``SAVE_STEP`` that way and continued
on 1 process, and one saved on 1 process and continued with the split, must
both give the per-step losses and final weights (tables, Adagrad
accumulators, MLPs, dense optimizer) of one uninterrupted single-process run.
A mixed-precision (bfloat16) run with the split trains like the float32 one.
The same save on 2 ranks and continuation on 1 holds with table 0 multi-hot
(3 ids per row, mean-pooled by the requesting rank).

Cost: four in-process runs and one ``horovodrun`` holding the four 2-rank
runs, about two minutes on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dlrm_main
from tests.distributed.horovod_launch import HOROVOD_MARKS, run_horovod
from tests.distributed.test_world_size_continuation import (
    FINAL_STEP,
    SAVE_STEP,
    TINY,
    _losses,
    _parameters,
)

pytestmark = [*HOROVOD_MARKS, pytest.mark.slow]

# Table 0 (2000 rows, 32,000 bytes at D = 4) is larger than the others together.
CARDINALITIES = [2000, 7, 11, 20, 50, 100] + [3, 7, 11, 20, 50, 100] * 3 + [5, 9]
# With Adagrad's slot: int(7e-5 GiB x 0.75) // 2 = 28,185 bytes of weights per
# rank is less than table 0, so it splits into rows [0, 1000) and [1000, 2000),
# and the other 12,400 bytes fill around the two 16,000-byte shards.
SPLIT_LIMIT = "--tf_mlu_memory_limit_gb=0.00007"
ARGS = [
    *(a for a in TINY if not a.startswith(("--synthetic_dataset_cardinalities", "--optimizer"))),
    "--synthetic_dataset_cardinalities=" + ",".join(map(str, CARDINALITIES)),
    "--optimizer=adagrad",
]
# Table 0 multi-hot: 3 ids per row, the bag's mean.
MULTI_HOT = [
    "--synthetic_dataset_hotness=" + ",".join(["3"] + ["1"] * (len(CARDINALITIES) - 1)),
    "--multi_hot_combiner=mean",
]
RTOL, ATOL = 1e-5, 1e-7


def _checkpoint(root: Path, step: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Metadata and arrays of a checkpoint, a table saved by row ranges reassembled."""
    directory = root / f"ckpt-{step:09d}"
    metadata = json.loads((directory / "checkpoint.json").read_text())
    arrays = {str(p.relative_to(directory)): np.load(p) for p in sorted(directory.rglob("*.npy"))}
    for table, shards in metadata.get("table_shards", {}).items():
        for name in shards[0]["files"]:
            pieces = [arrays.pop(shard["files"][name]) for shard in shards]
            suffix = "" if name == "weights" else f".{name}"
            arrays[f"tables/table_{table}{suffix}.npy"] = np.concatenate(pieces)
    return metadata, arrays


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("row_split")

    def args(name: str, *extra: str) -> list[str]:
        return [
            *ARGS,
            *extra,
            f"--log_path={root / (name + '.json')}",
            f"--save_checkpoint_path={root / name.split('.')[0]}",
        ]

    dlrm_main.main(["dlrm_main.py", *args("one", f"--checkpoint_every_n_steps={SAVE_STEP}")])
    every = f"--checkpoint_every_n_steps={SAVE_STEP}"
    dlrm_main.main(["dlrm_main.py", *args("mh_one", *MULTI_HOT, every)])
    two_rank_runs = [
        args(
            "one_then_split",
            "--use_horovod",
            SPLIT_LIMIT,
            f"--restore_checkpoint_path={root / 'one' / f'ckpt-{SAVE_STEP:09d}'}",
        ),
        args("split_then_one", "--use_horovod", SPLIT_LIMIT, f"--max_steps={SAVE_STEP}"),
        args("split_amp", "--use_horovod", SPLIT_LIMIT, "--amp"),
        args(
            "mh_split_then_one",
            *MULTI_HOT,
            "--use_horovod",
            SPLIT_LIMIT,
            f"--max_steps={SAVE_STEP}",
        ),
    ]
    (root / "runs.json").write_text(json.dumps(two_rank_runs))
    run_horovod(
        ["-np", "2", "--gloo"], ["-m", "tests.distributed.main_sequence", str(root / "runs.json")]
    )
    resumed = f"--restore_checkpoint_path={root / 'split_then_one'}"
    dlrm_main.main(["dlrm_main.py", *args("split_then_one.resumed", resumed)])
    resumed = f"--restore_checkpoint_path={root / 'mh_split_then_one'}"
    dlrm_main.main(["dlrm_main.py", *args("mh_split_then_one.resumed", *MULTI_HOT, resumed)])
    return root


def _assert_same_training(
    root: Path, name: str, losses: dict[int, float], reference_run: str = "one"
) -> None:
    reference = _losses(root / f"{reference_run}.json")
    assert sorted(losses) == sorted(reference) == list(range(1, FINAL_STEP + 1))
    np.testing.assert_allclose(
        [losses[s] for s in sorted(losses)],
        [reference[s] for s in sorted(losses)],
        rtol=RTOL,
        err_msg=f"{name}: per-step losses",
    )
    _, expected = _checkpoint(root / reference_run, FINAL_STEP)
    _, actual = _checkpoint(root / name, FINAL_STEP)
    assert actual.keys() == expected.keys() and "tables/table_0.accumulator.npy" in expected
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
    _, initial = _checkpoint(root / reference_run, SAVE_STEP)
    assert not np.allclose(initial["tables/table_0.npy"], expected["tables/table_0.npy"])


def test_saved_with_a_split_table_continues_on_one_process(runs: Path) -> None:
    params = _parameters(runs / "split_then_one.json")
    assert params["placement"]["split_tables"] == {"0": [[0, 1000, 0], [1000, 2000, 1]]}
    saved, _ = _checkpoint(runs / "split_then_one", SAVE_STEP)
    assert saved["world_size"] == 2 and "0" not in saved["tables"]
    assert [(s["rows"], s["rank"]) for s in saved["table_shards"]["0"]] == [
        ([0, 1000], 0),
        ([1000, 2000], 1),
    ]
    # Each rank wrote its 1000 rows of table 0 and of its accumulator: its share only.
    directory = runs / "split_then_one" / f"ckpt-{SAVE_STEP:09d}"
    for shard in saved["table_shards"]["0"]:
        assert sorted(shard["files"]) == ["accumulator", "weights"]
        for file in shard["files"].values():
            assert np.load(directory / file, mmap_mode="r").shape == (1000, 4)
    losses = {
        **_losses(runs / "split_then_one.json"),
        **_losses(runs / "split_then_one.resumed.json"),
    }
    _assert_same_training(runs, "split_then_one", losses)


def test_saved_on_one_process_continues_with_a_split_table(runs: Path) -> None:
    params = _parameters(runs / "one_then_split.json")
    assert params["placement"]["split_tables"] == {"0": [[0, 1000, 0], [1000, 2000, 1]]}
    assert params["split_alltoall_bytes_per_step_max"] == 63 * (8 + 2 * 4 * 4)
    final, _ = _checkpoint(runs / "one_then_split", FINAL_STEP)
    assert final["world_size"] == 2 and "0" in final["table_shards"]
    reference = _losses(runs / "one.json")
    continued = _losses(runs / "one_then_split.json")
    assert min(continued) == SAVE_STEP + 1, f"continued from step {min(continued) - 1}"
    losses = {**{s: reference[s] for s in range(1, SAVE_STEP + 1)}, **continued}
    _assert_same_training(runs, "one_then_split", losses)


def test_mixed_precision_with_a_split_table_trains_like_float32(runs: Path) -> None:
    params = _parameters(runs / "split_amp.json")
    assert params["placement"]["split_tables"] == {"0": [[0, 1000, 0], [1000, 2000, 1]]}
    assert params["precision_policy"] == "mixed_bfloat16"
    # 16-bit vectors: the bound on the split tables' bytes halves its vector part.
    assert params["split_alltoall_bytes_per_step_max"] == 63 * (8 + 2 * 4 * 2)
    amp, fp32 = _losses(runs / "split_amp.json"), _losses(runs / "one.json")
    assert sorted(amp) == sorted(fp32)
    # bfloat16 keeps 8 bits of mantissa: the same training within a few percent.
    np.testing.assert_allclose(
        [amp[s] for s in sorted(amp)], [fp32[s] for s in sorted(fp32)], rtol=0.05
    )
    assert amp[FINAL_STEP] < amp[1]
    _, arrays = _checkpoint(runs / "split_amp", FINAL_STEP)
    _, reference = _checkpoint(runs / "one", FINAL_STEP)
    assert arrays["tables/table_0.npy"].dtype == np.float32
    np.testing.assert_allclose(
        arrays["tables/table_0.npy"], reference["tables/table_0.npy"], rtol=0.05, atol=1e-3
    )


def test_multi_hot_split_table_saved_on_two_ranks_continues_on_one(runs: Path) -> None:
    params = _parameters(runs / "mh_split_then_one.json")
    assert params["placement"]["split_tables"] == {"0": [[0, 1000, 0], [1000, 2000, 1]]}
    # Three ids per row of table 0, each an id out and a vector back and forth at most.
    assert params["split_alltoall_bytes_per_step_max"] == 63 * 3 * (8 + 2 * 4 * 4)
    saved, _ = _checkpoint(runs / "mh_split_then_one", SAVE_STEP)
    assert saved["world_size"] == 2
    assert [(s["rows"], s["rank"]) for s in saved["table_shards"]["0"]] == [
        ([0, 1000], 0),
        ([1000, 2000], 1),
    ]
    losses = {
        **_losses(runs / "mh_split_then_one.json"),
        **_losses(runs / "mh_split_then_one.resumed.json"),
    }
    _assert_same_training(runs, "mh_split_then_one", losses, reference_run="mh_one")
    # The multi-hot run is another training than the one-hot one.
    assert _losses(runs / "mh_one.json")[FINAL_STEP] != _losses(runs / "one.json")[FINAL_STEP]
