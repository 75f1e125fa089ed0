"""Bad input and faults met by `dlrm_main.py`: one line naming what and where, exit status 2.

Each case runs the real command line in a subprocess (the way a user meets
it) on a tiny dataset or synthetic data, and checks that nothing written
before the fault is lost.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.test_main import REPO_ROOT, TINY, _write_tiny_dataset

RAW_TINY = [a for a in TINY if not a.startswith(("--dataset_type", "--synthetic"))]


def run_main(*flags: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs `python dlrm_main.py *flags` in ``cwd``; returns the finished process."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "dlrm_main.py"), *flags],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def assert_one_line_error(
    done: subprocess.CompletedProcess, *expected: str, status: int = 2
) -> str:
    """Exit ``status``, no traceback, the last line `dlrm_main.py: ...` holding ``expected``."""
    assert done.returncode == status, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dlrm_main.py: "), done.stderr[-3000:]
    for text in expected:
        assert text in last, last
    return last


def test_a_nan_in_numerical_bin_stops_the_run_naming_file_and_row(tmp_path) -> None:
    _write_tiny_dataset(tmp_path / "data", test_rows=128)
    path = tmp_path / "data" / "train" / "numerical.bin"
    numerical = np.fromfile(path, np.float16)
    numerical[130 * 13 + 4] = np.nan  # row 130 (second batch), column 4
    numerical.tofile(path)
    done = run_main(
        *RAW_TINY,
        f"--dataset_path={tmp_path / 'data'}",
        "--skip_eval",
        f"--save_checkpoint_path={tmp_path / 'ckpt'}",
        "--checkpoint_every_n_steps=1",
        cwd=tmp_path,
    )
    last = assert_one_line_error(done, f"{path}: row 130 column 4 holds nan, not a finite number")
    assert last.endswith("not a finite number"), last
    # The step before the bad batch was checkpointed; nothing after it.
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["ckpt-000000001"]


def _all_finite(checkpoint: Path) -> bool:
    return all(np.isfinite(np.load(p)).all() for p in checkpoint.rglob("*.npy"))


def test_a_diverging_run_stops_at_its_first_non_finite_step_keeping_its_checkpoints(
    tmp_path,
) -> None:
    """The probe's `--learning_rate 1e6`: it used to save non-finite weights and exit 0."""
    ckpt = tmp_path / "ckpt"
    flags = [a for a in TINY if not a.startswith(("--optimizer", "--learning_rate"))]
    done = run_main(
        *flags,
        "--optimizer=sgd",
        "--learning_rate=1e6",
        "--skip_eval",
        f"--save_checkpoint_path={ckpt}",
        "--checkpoint_every_n_steps=1",
        cwd=tmp_path,
    )
    last = assert_one_line_error(done, "non-finite ", " at step ", status=1)
    step = int(last.split(" at step ")[1].split()[0])
    saved = sorted(ckpt.iterdir())
    assert saved[-1].name == f"ckpt-{step - 1:09d}", (last, saved)
    assert all(_all_finite(p) for p in saved)


def test_skip_mode_ends_a_diverged_run_after_twenty_non_finite_steps_in_a_row(tmp_path) -> None:
    flags = [a for a in TINY if not a.startswith(("--optimizer", "--learning_rate"))]
    done = run_main(
        *flags,
        "--optimizer=sgd",
        "--learning_rate=1e6",
        "--skip_eval",
        "--on_nonfinite=skip",
        f"--save_checkpoint_path={tmp_path / 'ckpt'}",
        cwd=tmp_path,
    )
    last = assert_one_line_error(done, "non-finite loss or gradients at steps ", status=1)
    assert "(20 in a row, each skipped; last loss " in last, last
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())
