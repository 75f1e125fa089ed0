"""Checkpoints across world sizes (issue 5 item 5), through ``dlrm_main.main``.

A run saved at step ``SAVE_STEP`` on 2 ranks and continued on 1 process, and
one saved on 1 process and continued on 2 ranks, must both give the per-step
losses and final weights of one uninterrupted single-process run.

Both models run it (``MODELS``): DCNv2 differs from DLRM only in its dense
part, which the same hybrid-parallel code drives.

Cost per model: two in-process runs and one ``horovodrun`` holding both
2-rank runs (``main_sequence``), about 30 s on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dlrm_main
from tests.distributed.horovod_launch import HOROVOD_MARKS, run_horovod

pytestmark = [*HOROVOD_MARKS, pytest.mark.slow]

CARDINALITIES = [3, 7, 11, 20, 50, 100] * 4 + [5, 9]
BATCHES_PER_EPOCH = 6
SAVE_STEP = 4  # mid-epoch: the continuation resumes inside epoch 0 and crosses into epoch 1
FINAL_STEP = 2 * BATCHES_PER_EPOCH
TINY = [
    "--dataset_type=synthetic",
    "--synthetic_dataset_cardinalities=" + ",".join(map(str, CARDINALITIES)),
    f"--synthetic_dataset_train_batches={BATCHES_PER_EPOCH}",
    "--synthetic_dataset_valid_batches=2",
    # Odd: two ranks get slices of 32 and 31 rows, so the logged loss must be
    # weighted by rows to equal the single-process mean.
    "--batch_size=63",
    "--valid_batch_size=63",
    "--embedding_dim=4",
    "--bottom_mlp_dims=8,4",
    "--top_mlp_dims=8,1",
    # Adam: the continuation also needs both optimizers' slots and step counters.
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--warmup_steps=2",
    "--decay_start_step=6",
    "--decay_steps=20",
    "--epochs=2",
    "--skip_eval",
    "--print_freq=1",  # a loss per step
    "--seed=7",
]
MODELS = {
    "dlrm": [],
    "dcnv2": ["--model_type=dcnv2", "--num_cross_layers=2", "--cross_layer_projection_dim=8"],
}
# Weights and optimizer slots: relative 1e-5, plus an absolute floor for values
# near zero (Adam's first moments), where summing two ranks' gradient
# contributions in another order moves the last bits.
RTOL, ATOL = 1e-5, 1e-7


def _losses(log: Path) -> dict[int, float]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return {
        e["step"]: e["data"]["loss"]
        for e in entries
        if e["type"] == "LOG" and isinstance(e["step"], int) and "loss" in e["data"]
    }


def _parameters(log: Path) -> dict:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    params: dict = {}
    for e in entries:
        if e["type"] == "LOG" and e["step"] == "PARAMETER":
            params.update(e["data"])
    return params


def _checkpoint(root: Path, step: int) -> tuple[dict, dict[str, np.ndarray]]:
    directory = root / f"ckpt-{step:09d}"
    metadata = json.loads((directory / "checkpoint.json").read_text())
    arrays = {str(p.relative_to(directory)): np.load(p) for p in sorted(directory.rglob("*.npy"))}
    return metadata, arrays


@pytest.fixture(scope="module", params=sorted(MODELS))
def runs(tmp_path_factory, request) -> Path:
    root = tmp_path_factory.mktemp(f"continuation_{request.param}")

    def args(name: str, *extra: str) -> list[str]:
        return [
            *TINY,
            *MODELS[request.param],
            *extra,
            f"--log_path={root / (name + '.json')}",
            f"--save_checkpoint_path={root / name.split('.')[0]}",
        ]

    # The reference, which also leaves the single-process checkpoint of SAVE_STEP.
    dlrm_main.main(["dlrm_main.py", *args("one", f"--checkpoint_every_n_steps={SAVE_STEP}")])
    two_rank_runs = [
        # Saved on 1 process, continued on 2 ranks.
        args(
            "one_then_two",
            "--use_horovod",
            f"--restore_checkpoint_path={root / 'one' / f'ckpt-{SAVE_STEP:09d}'}",
        ),
        # Saved on 2 ranks (continued on 1 process below).
        args("two_then_one", "--use_horovod", f"--max_steps={SAVE_STEP}"),
    ]
    (root / "runs.json").write_text(json.dumps(two_rank_runs))
    run_horovod(
        ["-np", "2", "--gloo"], ["-m", "tests.distributed.main_sequence", str(root / "runs.json")]
    )
    dlrm_main.main(
        [
            "dlrm_main.py",
            *args("two_then_one.resumed", f"--restore_checkpoint_path={root / 'two_then_one'}"),
        ]
    )
    return root


def _assert_same_training(root: Path, name: str, losses: dict[int, float]) -> None:
    reference = _losses(root / "one.json")
    assert sorted(reference) == list(range(1, FINAL_STEP + 1))
    assert sorted(losses) == sorted(reference), f"{name}: logged steps {sorted(losses)}"
    np.testing.assert_allclose(
        [losses[s] for s in sorted(losses)],
        [reference[s] for s in sorted(losses)],
        rtol=RTOL,
        err_msg=f"{name}: per-step losses",
    )
    _, expected = _checkpoint(root / "one", FINAL_STEP)
    _, actual = _checkpoint(root / name, FINAL_STEP)
    # Every table, its Adam slots, the MLPs and the dense optimizer state.
    assert actual.keys() == expected.keys() and len(expected) > 3 * len(CARDINALITIES)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
    _, initial = _checkpoint(root / "one", SAVE_STEP)
    assert not np.allclose(initial["dense/variable_000.npy"], expected["dense/variable_000.npy"])


def test_saved_on_two_ranks_continues_on_one_process(runs: Path) -> None:
    saved, _ = _checkpoint(runs / "two_then_one", SAVE_STEP)
    assert saved["world_size"] == 2
    assert set(saved["table_owners"].values()) == {0, 1}, "both ranks must own tables"
    assert saved["data_position"] == {"epoch": 0, "batch": SAVE_STEP, "global_batch_size": 63}
    final, _ = _checkpoint(runs / "two_then_one", FINAL_STEP)
    assert final["world_size"] == 1
    losses = {**_losses(runs / "two_then_one.json"), **_losses(runs / "two_then_one.resumed.json")}
    _assert_same_training(runs, "two_then_one", losses)


def test_saved_on_one_process_continues_on_two_ranks(runs: Path) -> None:
    final, _ = _checkpoint(runs / "one_then_two", FINAL_STEP)
    assert final["world_size"] == 2
    params = _parameters(runs / "one_then_two.json")
    assert params["world_size"] == 2
    # The run is the model the fixture parameter names (its directory ends with it).
    assert runs.name.startswith(f"continuation_{params['model.model_type']}")
    reference = _losses(runs / "one.json")
    losses = {s: reference[s] for s in range(1, SAVE_STEP + 1)}
    continued = _losses(runs / "one_then_two.json")
    assert min(continued) == SAVE_STEP + 1, f"continued from step {min(continued) - 1}"
    _assert_same_training(runs, "one_then_two", {**losses, **continued})
