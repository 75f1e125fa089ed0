"""Faults during preprocessing: interruption at every point, a full disk, a read-only
output directory, two runs into one output directory."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import preproc.assemble
import preproc.count_pass
import preproc.lock
from preproc import cli
from preproc.lock import LOCK_FILE, OutputLockedError
from tests.preproc.helpers import preprocess, sample, tree_bytes

# Small units and buckets: several tasks of every kind from ~65 KB of real rows
# (the stripped-fields file gives only rejects, so rejects.tsv is compared too).
INPUTS = [sample("deepctr_criteo_sample.tsv"), sample("paddlerec_trailing_fields_stripped.tsv")]
OPTIONS = {"unit_bytes": 16 << 10, "shuffle_bucket_rows": 60, "seed": 3}
REPO = Path(__file__).resolve().parents[2]


class SimulatedCrashError(Exception):
    pass


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, bytes], list[tuple[str, int]]]:
    """The uninterrupted output, and every point where a run can be interrupted."""
    out = tmp_path_factory.mktemp("ref") / "out"
    points: list[tuple[str, int]] = []
    preprocess(INPUTS, out, hook=lambda step, index: points.append((step, index)), **OPTIONS)
    return tree_bytes(out), points


def _assert_finished(out: Path) -> None:
    names = {str(p.relative_to(out)) for p in out.rglob("*")}
    assert "preproc_summary.json" in names and "metadata.json" in names
    assert not [n for n in names if n.endswith(".tmp")], names
    assert "_work" not in names and LOCK_FILE not in names


def test_every_interruption_point_resumes_to_identical_output(tmp_path, reference):
    expected, points = reference
    kinds = {step for step, _ in points}
    assert kinds == {"count", "vocab", "transform", "assemble", "finish"}
    # The three final writes: model_size.json, the summary, metadata.json (commit point).
    assert [p for p in points if p[0] == "finish"] == [("finish", 0), ("finish", 1), ("finish", 2)]
    for number, point in enumerate(points):
        out = tmp_path / f"run_{number}"

        def crash(step: str, index: int, point=point) -> None:
            if (step, index) == point:
                raise SimulatedCrashError(point)

        with pytest.raises(SimulatedCrashError):
            preprocess(INPUTS, out, hook=crash, **OPTIONS)
        # Only a crash after the commit point leaves a dataset that is already complete.
        assert (out / "metadata.json").exists() == (point == ("finish", 2)), point
        preprocess(INPUTS, out, **OPTIONS)
        assert tree_bytes(out) == expected, point
        _assert_finished(out)


def _file_kind(path: str) -> str:
    """``pass2/unit_000003.train.rec`` -> ``pass2/unit_N.train.rec``: one kind per file role."""
    parent, name = os.path.split(path)
    return f"{os.path.basename(parent)}/{re.sub(r'[0-9]+', 'N', name)}"


def test_a_kill_between_writing_and_renaming_any_kind_of_file_resumes(tmp_path, reference):
    """Every file is written as .tmp and renamed; a run killed in between leaves the .tmp.
    Interrupted before the first rename of each kind of file (and of each final file)."""
    renames: list[str] = []
    real_replace = os.replace

    def record(src, dst):
        renames.append(str(dst))
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", record)
        preprocess(INPUTS, tmp_path / "probe", **OPTIONS)
    first_of_kind: dict[str, int] = {}
    for number, path in enumerate(renames):
        first_of_kind.setdefault(_file_kind(path), number)
    assert len(first_of_kind) >= 20, sorted(first_of_kind)
    for kind, crash_at in first_of_kind.items():
        out = tmp_path / f"run_{crash_at}"
        calls = iter(range(len(renames)))

        def crash(src, dst, crash_at=crash_at, calls=calls):
            if next(calls) == crash_at:
                raise SimulatedCrashError(dst)  # the .tmp stays, as after kill -9
            real_replace(src, dst)

        with pytest.MonkeyPatch.context() as patch, pytest.raises(SimulatedCrashError):
            patch.setattr(os, "replace", crash)
            preprocess(INPUTS, out, **OPTIONS)
        preprocess(INPUTS, out, **OPTIONS)
        assert tree_bytes(out) == reference[0], kind
        _assert_finished(out)


def _cli_args(out: Path) -> list[str]:
    args = ["--input_files", *INPUTS, "--output_dir", str(out), "--frequency_threshold", "2"]
    args += ["--unit_mb", str((16 << 10) / (1 << 20)), "--shuffle_bucket_rows", "60"]
    return [*args, "--seed", "3", "--num_workers", "1"]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _partial_savez_then_no_space(file, **arrays) -> None:
    file.write(b"\x93NUMPY partial")  # a write that got some bytes out before the disk filled
    _no_space()


@pytest.mark.parametrize(
    ("module", "name", "fake"),
    [
        (preproc.assemble.os, "pwrite", _no_space),  # writing the split files
        (preproc.count_pass.np, "savez", _partial_savez_then_no_space),  # a pass-1 result
    ],
    ids=["split_files", "pass1_result"],
)
def test_full_disk_fails_in_one_line_and_a_rerun_is_identical(
    tmp_path, capsys, monkeypatch, reference, module, name, fake
):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(module, name, fake)
        assert cli.main(_cli_args(out)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _error_lines(err) == [
        f"error: writing under {out}: No space left on device; free space and rerun the "
        "same command (it continues where it stopped)"
    ]
    assert not (out / "metadata.json").exists()
    assert cli.main(_cli_args(out)) == 0  # "space freed"
    assert tree_bytes(out) == reference[0]
    _assert_finished(out)


def test_read_only_output_dir_fails_at_start(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), str(out / LOCK_FILE))
    real_open = os.open

    def refuse(path, flags, *args):
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise read_only
        return real_open(path, flags, *args)

    # The tests may run as root, whom chmod does not stop: fake the kernel's answer
    # for a read-only mount instead.
    monkeypatch.setattr(preproc.lock.os, "open", refuse)
    assert cli.main(_cli_args(out)) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {out / LOCK_FILE}: Read-only file system (--output_dir {out} must be writable)"
    ]  # nothing else ran: not even a progress bar
    assert list(out.iterdir()) == []


def test_a_second_run_into_the_same_output_dir_fails_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    seen: list[subprocess.CompletedProcess] = []

    def second_run(step: str, index: int) -> None:
        if not seen:  # while this run holds the directory, another process tries it
            command = [sys.executable, "-m", "preproc", *_cli_args(out)]
            seen.append(subprocess.run(command, cwd=REPO, capture_output=True, text=True))
            with pytest.raises(OutputLockedError, match=f"pid {os.getpid()} on "):
                preprocess(INPUTS, out, **OPTIONS)  # and from this process, too

    preprocess(INPUTS, out, hook=second_run, **OPTIONS)
    other = seen[0]
    assert other.returncode == 1 and "Traceback" not in other.stderr
    [line] = other.stderr.splitlines()
    host = socket.gethostname()
    assert line.startswith(f"error: {out} is being written by another preprocessing run ")
    assert f"(pid {os.getpid()} on {host} since 20" in line
    assert line.endswith("wait for it to finish or choose another --output_dir")
    _assert_finished(out)  # the first run finished undisturbed and released the lock


def test_a_lock_file_left_by_a_killed_run_does_not_block(tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("pid 1 on elsewhere since 2026-01-01 00:00:00 UTC\n")
    preprocess(INPUTS, out, **OPTIONS)
    assert tree_bytes(out) == reference[0]
    _assert_finished(out)


def test_input_changed_during_the_run_is_refused(tmp_path):
    copy = tmp_path / "input.tsv"
    copy.write_bytes(Path(INPUTS[0]).read_bytes())

    def edit(step: str, index: int) -> None:
        if (step, index) == ("count", 0):
            with open(copy, "r+b") as f:
                f.write(b"1" if f.read(1) == b"0" else b"0")

    with pytest.raises(ValueError, match=rf"input changed while being preprocessed: {copy} \("):
        preprocess([str(copy)], tmp_path / "out", hook=edit)
    assert not (tmp_path / "out" / "metadata.json").exists()
