"""Two-rank runs under ``horovodrun -np 2 --gloo`` (CPU).

Each ``horovodrun`` costs about 10 s of start-up on two cores, so there are
few of them. Skipped only when Horovod is not importable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.distributed import parity_setup as ps
from tests.distributed.horovod_launch import (
    HOROVOD_MARKS,
    HOROVODRUN,
    REPO,
    horovod_env,
    run_horovod,
)

# A dead process ends the job in well under a second (module docstring of
# models/distributed/comm.py); the bound leaves room for a loaded machine.
DEAD_RANK_BOUND_SECONDS = 10.0

pytestmark = HOROVOD_MARKS


def _command(*args: str) -> list[str]:
    return [str(HOROVODRUN), "-np", "2", "--gloo", sys.executable, "-m", *args]


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_horovod(["-np", "2", "--gloo"], ["-m", *args])


def test_smoke_collectives():
    done = _run("tests.distributed.hvd_program", "smoke")
    assert "rank 0: smoke OK" in done.stdout
    assert "rank 1: smoke OK" in done.stdout


def _assert_parity(
    tmp_path: Path,
    suffix: str = "",
    prefix: str = "",
    optimizer: str | None = None,
    hotness: tuple[int, ...] | None = None,
    rtol: float = 1e-5,
) -> list[dict[str, np.ndarray]]:
    """Checks the parity program's outputs against one process; returns them."""
    ranks = [dict(np.load(tmp_path / f"{prefix}rank{r}{suffix}.npz")) for r in range(2)]
    reference = ps.run_reference(optimizer, hotness)

    # Every table is owned by exactly one rank, and both ranks own some.
    owned = [{k for k in rank if k.startswith("table_")} for rank in ranks]
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    assert owned[0] | owned[1] == {f"table_{t}" for t in range(len(ps.CARDINALITIES))}

    for key, expected in reference.items():
        for rank in ranks:
            if key in rank:
                np.testing.assert_allclose(rank[key], expected, rtol=rtol, atol=1e-7, err_msg=key)
    # Training really changed the weights the comparison is about.
    initial = ps.build_model(hotness=hotness)
    assert not np.allclose(initial.dense_variables[0].numpy(), reference["dense_0"])
    auc = roc_auc_score(ranks[0]["labels"], ranks[0]["predictions"])
    assert auc == pytest.approx(roc_auc_score(reference["labels"], reference["predictions"]))
    return ranks


def test_two_ranks_match_one_process(tmp_path):
    _run("tests.distributed.hvd_program", "parity", str(tmp_path))
    ranks = _assert_parity(tmp_path)
    # One host, two ranks on it: (local rank, local size, hosts).
    assert [r["topology"].tolist() for r in ranks] == [[0, 2, 1], [1, 2, 1]]
    # The placement whose tables arrive in table order (no reordering).
    ordered = _assert_parity(tmp_path, "_ordered")
    assert sorted(k for k in ordered[0] if k.startswith("table_")) == [
        "table_0",
        "table_1",
        "table_2",
    ]


def test_multi_hot_tables_on_two_ranks_match_one_process(tmp_path):
    """Owners pool the bags (padding, repeated ids); the all-to-all carries pooled vectors."""
    _run("tests.distributed.hvd_program", "multi_hot", str(tmp_path))
    for optimizer, rtol in (("sgd", 1e-5), ("adam", 1e-4)):
        ranks = _assert_parity(
            tmp_path, "", f"multi_hot_{optimizer}_", optimizer, ps.MULTI_HOT, rtol
        )
        reference = ps.run_reference(optimizer, ps.MULTI_HOT)
        for rank in ranks:
            np.testing.assert_allclose(rank["losses"], reference["losses"], rtol=1e-5)
            np.testing.assert_allclose(rank["predictions"], reference["predictions"], rtol=rtol)


def _assert_split_parity(
    tmp_path: Path,
    prefix: str,
    placement,
    hotness: tuple[int, ...] | None = None,
    linear: bool = False,
    regularisation: dict[str, float] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Checks a split run (``{prefix}_{optimizer}_rank{r}.npz``) against one process.

    Per optimizer: per-step losses, predictions, dense weights and every
    rank's rows of every table it holds; each rank's variables and slots have
    its shard's shape only, and the ranks together hold every row once.
    Returns the reference runs by optimizer.
    """
    references = {}
    for optimizer, rtol in (("sgd", 1e-5), ("adagrad", 1e-5), ("adam", 1e-4)):
        reference = references[optimizer] = ps.run_reference(
            optimizer, hotness, linear, regularisation
        )
        ranks = [dict(np.load(tmp_path / f"{prefix}_{optimizer}_rank{r}.npz")) for r in range(2)]
        for rank, result in enumerate(ranks):
            np.testing.assert_allclose(result["losses"], reference["losses"], rtol=rtol)
            np.testing.assert_allclose(
                result["predictions"], reference["predictions"], rtol=rtol, atol=1e-7
            )
            for key in [k for k in reference if k.startswith("dense_")]:
                np.testing.assert_allclose(result[key], reference[key], rtol=rtol, atol=1e-7)
            # Each rank holds its rows of the split tables and nothing more: the
            # variable and every optimizer slot have the shard's shape.
            for table, (start, end) in placement.row_ranges(rank).items():
                assert result[f"table_{table}_rows"].tolist() == [start, end]
                slots = {"sgd": 0, "adagrad": 1, "adam": 2}[optimizer]
                width = ps.DIM + int(linear)
                assert result[f"shapes_{table}"].tolist() == [[end - start, width]] * (1 + slots)
            for table in placement.tables_per_rank[rank]:
                start, end = result.get(f"table_{table}_rows", (0, ps.CARDINALITIES[table]))
                np.testing.assert_allclose(
                    result[f"table_{table}"],
                    reference[f"table_{table}"][start:end],
                    rtol=rtol,
                    atol=1e-7,
                    err_msg=f"{optimizer} table {table} rows [{start}, {end}) on rank {rank}",
                )
        # Together the ranks hold every row of the split tables exactly once.
        for table in placement.split_tables:
            rows = sorted(tuple(r[f"table_{table}_rows"]) for r in ranks)
            assert rows[0][0] == 0 and rows[0][1] == rows[1][0]
            assert rows[1][1] == ps.CARDINALITIES[table]
    return references


@pytest.mark.slow
def test_tables_split_by_rows_match_one_process(tmp_path):
    """Tables 0 and 3 split over the two ranks: ids routed to their rows' ranks.

    The batches hold duplicate ids and ids on both sides of each row boundary
    in both ranks' slices (``parity_setup.make_batches``).
    """
    _run("tests.distributed.hvd_program", "split", str(tmp_path))
    references = _assert_split_parity(tmp_path, "split", ps.split_placement())
    # The split tables' boundary rows were trained (differ from the start).
    initial = ps.build_model().embedding_variables[0].numpy()
    for reference in references.values():
        assert not np.allclose(initial[3:5], reference["table_0"][3:5])


@pytest.mark.slow
def test_multi_hot_tables_split_by_rows_match_one_process(tmp_path):
    """Multi-hot tables 1 (mean) and 3 (sum) and one-hot table 0 split by rows.

    Only valid ids travel; the requesting rank pools the returned vectors. The
    bags hold ids on both sides of each boundary, repeats, padding and empty
    bags in both ranks' slices (``parity_setup.make_batches``).
    """
    _run("tests.distributed.hvd_program", "split_multi_hot", str(tmp_path))
    (_, categorical, _), *_ = ps.make_batches(ps.TRAIN_BATCHES, seed=1, hotness=ps.MULTI_HOT)
    assert (categorical[:, 1:4] == -1).all(axis=1).any()  # an empty bag of table 1
    placement = ps.split_multi_hot_placement()
    assert placement.split_tables == (0, 1, 3)
    references = _assert_split_parity(tmp_path, "split_multi_hot", placement, ps.MULTI_HOT)
    initial = ps.build_model(hotness=ps.MULTI_HOT).embedding_variables
    for reference in references.values():
        # Rows on both sides of the boundaries of tables 1 and 3 were trained.
        assert not np.allclose(initial[1].numpy()[4:6], reference["table_1"][4:6])
        assert not np.allclose(initial[3].numpy()[5:7], reference["table_3"][5:7])
    # Rows no batch names stay as they were under every optimizer: padding
    # moves no row. Padding (-1) of table 1 offset into the shared id space
    # would be table 0's last row 6; table 1's id 7 is never drawn either.
    train = ps.make_batches(ps.TRAIN_BATCHES, seed=1, hotness=ps.MULTI_HOT)
    assert not any((c[:, 0] == 6).any() or (c[:, 1:4] == 7).any() for _, c, _ in train)
    for optimizer in ("sgd", "adagrad", "adam"):
        rank0, rank1 = (
            dict(np.load(tmp_path / f"split_multi_hot_{optimizer}_rank{r}.npz")) for r in range(2)
        )
        assert rank0["table_1_rows"].tolist() == [5, 11]
        assert rank1["table_0_rows"].tolist() == [4, 7]
        np.testing.assert_array_equal(rank0["table_1"][7 - 5], initial[1].numpy()[7])
        np.testing.assert_array_equal(rank1["table_0"][6 - 4], initial[0].numpy()[6])


@pytest.mark.slow
def test_a_regularised_linear_part_on_two_ranks_matches_one_process(tmp_path):
    """--linear: the per-id weight column travels with the vectors, pooled as they are,
    through whole and row-split tables, one-hot and multi-hot; lazy L2 and the weight
    decays of tables and MLPs (each rank decays the rows it holds) give one process's
    result too."""
    _run("tests.distributed.hvd_program", "split_linear", str(tmp_path))
    references = _assert_split_parity(
        tmp_path,
        "split_linear",
        ps.split_multi_hot_placement(),
        ps.MULTI_HOT,
        linear=True,
        regularisation=ps.REGULARISATION,
    )
    initial = ps.build_model(hotness=ps.MULTI_HOT, linear=True).embedding_variables
    unregularised = ps.run_reference("adam", ps.MULTI_HOT, linear=True)
    for reference in references.values():
        # The weight column was trained too.
        assert not np.allclose(initial[2].numpy()[:, -1], reference["table_2"][:, -1])
    # The regularisers changed the result (the parity above is not that of plain runs).
    for key in ("table_2", "dense_0"):
        assert not np.allclose(unregularised[key], references["adam"][key], rtol=1e-3)


def test_two_local_host_names_run_as_two_nodes(tmp_path):
    """The multi-node launch form ``-H host1:1,host2:1`` on loopback, without ssh.

    horovodrun resolves every ``-H`` name and starts the ranks of names whose
    address belongs to a local interface directly (no ssh); the rest over ssh.
    Two names of this machine therefore give a real two-host topology: one
    rank per host, each local rank 0, Gloo over the loopback interface.
    """
    run_horovod(
        ["-np", "2", "-H", "localhost:1,127.0.0.1:1", "--gloo"],
        ["-m", "tests.distributed.hvd_program", "parity", str(tmp_path)],
    )
    ranks = _assert_parity(tmp_path)
    assert [r["topology"].tolist() for r in ranks] == [[0, 1, 2], [0, 1, 2]]


def _loop_until_stopped(tmp_path: Path, sig: int, **env: str) -> tuple[float, float, int, str]:
    """Starts the training loop, sends ``sig`` to rank 1 and waits for the job to end.

    Returns (seconds until rank 0's collective failed, seconds until horovodrun
    exited, its exit status, its output); both times count from the signal.
    """
    job = subprocess.Popen(
        _command("tests.distributed.hvd_program", "loop", str(tmp_path)),
        cwd=REPO,
        env=horovod_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while not all((tmp_path / f"pid{r}").exists() for r in range(2)):
            assert job.poll() is None, f"job ended early:\n{job.stdout.read()[-3000:]}"
            assert time.time() < deadline, "ranks did not start training within 120 s"
            time.sleep(0.2)
        time.sleep(1.0)  # a few steps in
        victim = int((tmp_path / "pid1").read_text())
        signalled = time.time()
        os.kill(victim, sig)
        output, _ = job.communicate(timeout=120)
        ended = time.time() - signalled
        failed_file = tmp_path / "failed0"
        assert failed_file.exists(), f"rank 0 saw no failed collective:\n{output[-3000:]}"
        failed = float(failed_file.read_text().split()[0]) - signalled
        return failed, ended, job.returncode, output
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        # The ranks this test started, should horovodrun have left one behind
        # (a stopped rank ignores its SIGTERM).
        for pid_file in tmp_path.glob("pid*"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text())
                # Only if the pid still is our rank (not a reused pid).
                if str(tmp_path) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)


def test_killed_rank_ends_the_job(tmp_path):
    failed, ended, status, output = _loop_until_stopped(tmp_path, signal.SIGKILL)
    assert status != 0, output[-3000:]
    assert failed < DEAD_RANK_BOUND_SECONDS, f"rank 0 failed {failed:.1f} s after the kill"
    assert ended < DEAD_RANK_BOUND_SECONDS, f"job ended {ended:.1f} s after the kill"


@pytest.mark.slow
def test_frozen_rank_fails_after_gloo_timeout(tmp_path):
    failed, ended, status, output = _loop_until_stopped(
        tmp_path, signal.SIGSTOP, HOROVOD_GLOO_TIMEOUT_SECONDS="5"
    )
    assert status != 0, output[-3000:]
    assert 4.0 < failed < 15.0, f"rank 0 failed {failed:.1f} s after rank 1 froze"
    assert ended < 60.0, f"job ended {ended:.1f} s after rank 1 froze"
