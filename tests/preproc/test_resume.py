"""Byte-identical outputs for any worker count and after an interrupted, resumed run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.preproc.helpers import LABELED_SAMPLES, preprocess, sample, tree_bytes

# With the stripped-fields file, rejects.tsv (75 lines) is compared as well.
INPUTS = [sample(n) for n in LABELED_SAMPLES] + [sample("paddlerec_trailing_fields_stripped.tsv")]
# Small units and buckets so the samples make many tasks of every kind.
OPTIONS = {"unit_bytes": 48 << 10, "shuffle_bucket_rows": 400, "seed": 7}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("ref") / "out"
    preprocess(INPUTS, out, num_workers=1, **OPTIONS)
    return tree_bytes(out)


def test_two_workers_write_the_same_bytes(tmp_path, reference):
    preprocess(INPUTS, tmp_path / "out", num_workers=2, **OPTIONS)
    assert tree_bytes(tmp_path / "out") == reference
    assert len([k for k in reference if k.startswith("train/")]) == 28
    assert reference["rejects.tsv"].count(b"\n") == 76


def test_seed_changes_the_shuffle_only(tmp_path, reference):
    preprocess(INPUTS, tmp_path / "out", num_workers=1, **{**OPTIONS, "seed": 8})
    other = tree_bytes(tmp_path / "out")
    assert other["train/label.bin"] != reference["train/label.bin"]
    assert sorted(other["train/cat_3.bin"]) == sorted(reference["train/cat_3.bin"])
    assert other["test/cat_3.bin"] == reference["test/cat_3.bin"]


class SimulatedCrashError(Exception):
    pass


@pytest.mark.parametrize(
    ("step", "after", "workers"),
    [("count", 3, 2), ("vocab", 5, 1), ("transform", 4, 2), ("assemble", 6, 1)],
)
def test_interrupted_run_resumes_to_identical_output(tmp_path, reference, step, after, workers):
    done = []

    def crash(name, index):
        if name == step:
            done.append(index)
            if len(done) == after:
                raise SimulatedCrashError(f"{name} {index}")

    with pytest.raises(SimulatedCrashError):
        preprocess(INPUTS, tmp_path / "out", num_workers=workers, hook=crash, **OPTIONS)
    assert not (tmp_path / "out" / "metadata.json").exists()
    preprocess(INPUTS, tmp_path / "out", num_workers=1, **OPTIONS)
    assert tree_bytes(tmp_path / "out") == reference


def test_kill_9_then_rerun_gives_identical_output(tmp_path, reference):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "preproc", "--input_files", *INPUTS]
    command += ["--output_dir", str(out), "--frequency_threshold", "2", "--num_workers", "2"]
    command += ["--unit_mb", str(48 / 1024), "--shuffle_bucket_rows", "400", "--seed", "7"]
    proc = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL, start_new_session=True)
    pass2 = out / "_work" / "pass2"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if pass2.is_dir() and any(pass2.glob("*.done.json")):
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its workers
    proc.wait()
    assert not (out / "metadata.json").exists(), "run finished before it could be killed"
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    assert tree_bytes(out) == reference


def test_changed_options_refuse_to_resume(tmp_path):
    def crash(name, index):
        raise SimulatedCrashError

    with pytest.raises(SimulatedCrashError):
        preprocess(INPUTS, tmp_path / "out", hook=crash, **OPTIONS)
    with pytest.raises(ValueError, match="differs in: seed"):
        preprocess(INPUTS, tmp_path / "out", **{**OPTIONS, "seed": 1})


def test_rerun_of_a_finished_command_is_a_no_op_and_other_options_fail(tmp_path, capsys):
    preprocess(INPUTS[1:], tmp_path / "out")
    before = tree_bytes(tmp_path / "out")
    preprocess(INPUTS[1:], tmp_path / "out")
    assert "already a complete dataset" in capsys.readouterr().out
    assert tree_bytes(tmp_path / "out") == before
    with pytest.raises(ValueError, match="differs in: frequency_thresholds, seed"):
        preprocess(INPUTS[1:], tmp_path / "out", seed=3, frequency_thresholds=(1,) * 26)


def _flip_labels(path: Path) -> None:
    """Turns every 0 label into 1 and back, in place: same size, other contents."""
    lines = path.read_bytes().split(b"\n")
    flipped = [(b"1" if ln[:1] == b"0" else b"0") + ln[1:] if ln else ln for ln in lines]
    path.write_bytes(b"\n".join(flipped))


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["edited", "edited_mtime_restored"])
def test_an_input_changed_in_place_is_not_taken_for_the_finished_dataset(tmp_path, keep_mtime):
    data = tmp_path / "input.tsv"
    data.write_bytes(Path(sample("deepctr_criteo_sample.tsv")).read_bytes())
    preprocess([str(data)], tmp_path / "out")
    before = tree_bytes(tmp_path / "out")
    stat = data.stat()
    _flip_labels(data)
    assert data.stat().st_size == stat.st_size
    if keep_mtime:  # e.g. a copy with cp -p, or a clock set back: only the contents tell
        os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = "contents changed" if keep_mtime else "modification time, contents changed"
    with pytest.raises(ValueError, match=rf"differs in: input_files: {data} \({changed}\)"):
        preprocess([str(data)], tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == before  # refused, nothing touched


def test_a_touched_input_is_reported_by_its_modification_time(tmp_path):
    data = tmp_path / "input.tsv"
    data.write_bytes(Path(sample("deepctr_criteo_sample.tsv")).read_bytes())
    preprocess([str(data)], tmp_path / "out")
    os.utime(data, ns=(0, data.stat().st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match=r"input.tsv \(modification time changed\)"):
        preprocess([str(data)], tmp_path / "out")
