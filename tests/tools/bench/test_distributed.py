"""The distributed benchmark's command lines and log summary (the runs are too big for CI)."""

import json
import subprocess
from pathlib import Path

import pytest

from models.data.criteo import BENCH_CARDINALITIES
from tools.bench import distributed as bench_distributed


def test_one_rank_runs_dlrm_main_directly_and_two_under_horovodrun(tmp_path):
    one = bench_distributed.command(1, 40, 10, False, tmp_path / "a.json")
    two = bench_distributed.command(2, 40, 10, True, tmp_path / "b.json")
    assert one[1] == str(bench_distributed.REPO_ROOT / "dlrm_main.py") and Path(one[1]).is_file()
    assert "--use_horovod" not in one
    assert two[0].endswith("horovodrun") and two[1:4] == ["-np", "2", "--gloo"]
    assert "--use_horovod" in two and "--amp" in two and "--amp" not in one
    cards = "--synthetic_dataset_cardinalities=" + ",".join(map(str, BENCH_CARDINALITIES))
    assert cards in one and max(BENCH_CARDINALITIES) == 200_000
    assert "--benchmark_warmup_steps=10" in two and "--synthetic_dataset_train_batches=40" in two


def test_summary_reads_placement_alltoall_and_throughput(tmp_path):
    log = tmp_path / "log.json"
    entries = [
        {"type": "METADATA", "step": "PARAMETER", "data": {"metric": "throughput"}},
        {
            "type": "LOG",
            "step": "PARAMETER",
            "data": {
                "placement": {"world_size": 2, "bytes_per_rank": [10, 12], "total_bytes": 22},
                "alltoall_bytes_per_step": 4096,
            },
        },
        {"type": "LOG", "step": 5, "data": {"loss": 0.5}},
        {"type": "RESULT", "step": "RESULT", "data": {"throughput": 9.5, "mean_step_time_ms": 3}},
    ]
    log.write_text("".join(json.dumps({"timestamp": 0, **e}) + "\n" for e in entries))
    assert bench_distributed.summarise(log) == {
        "world_size": 2,
        "bytes_per_rank": [10, 12],
        "total_bytes": 22,
        "alltoall_bytes_per_step": 4096,
        "split_tables": [],
        "split_bytes_max": 0,
        "samples_per_second": 9.5,
        "mean_step_time_ms": 3,
    }


def _fake_jobs(monkeypatch, commands: list[list[str]]) -> None:
    """Replaces the benchmark jobs with ones that write the log dlrm_main would write.

    Throughput: 1000 / world samples/s, 10% more with ``top_first``.
    """
    real_run = subprocess.run

    def fake_run(cmd, **kwargs):
        logs = [a.split("=", 1)[1] for a in cmd if a.startswith("--log_path=")]
        if not logs:  # not a benchmark job (e.g. `uname -p` while TensorFlow is imported)
            return real_run(cmd, **kwargs)
        commands.append(cmd)
        log, world = logs[0], 2 if "--use_horovod" in cmd else 1
        speed = 1.1 if "top_first" in cmd else 1.0
        entries = [
            {
                "type": "LOG",
                "step": "PARAMETER",
                "data": {
                    "placement": {"world_size": world, "bytes_per_rank": [8] * world,
                                  "total_bytes": 8 * world},
                    "alltoall_bytes_per_step": 100 * (world - 1),
                },
            },
            {"type": "RESULT", "step": "RESULT",
             "data": {"throughput": speed * 1000.0 / world, "mean_step_time_ms": 4.0 * world}},
        ]  # fmt: skip
        with open(log, "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in entries)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(bench_distributed.subprocess, "run", fake_run)


def test_main_prints_the_machine_and_writes_the_rows(tmp_path, monkeypatch, capsys):
    _fake_jobs(monkeypatch, [])
    out = tmp_path / "dist.json"
    assert bench_distributed.main(["--ranks", "1,2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert printed.startswith("machine: ") and "2 ranks / 1: 0.50x samples/s" in printed
    assert results["machine"]["tensorflow"] and results["bf16"] is False
    assert [r["world_size"] for r in results["runs"]] == [1, 2]
    assert [r["samples_per_second"] for r in results["runs"]] == [1000.0, 500.0]


def test_a_larger_first_table_and_a_memory_limit_force_a_split(tmp_path):
    cmd = bench_distributed.command(
        2, 40, 10, False, tmp_path / "c.json", first_table_rows=3_000_000, memory_limit_gb=1.5
    )
    cards = [3_000_000, *BENCH_CARDINALITIES[1:]]
    assert "--synthetic_dataset_cardinalities=" + ",".join(map(str, cards)) in cmd
    assert "--tf_mlu_memory_limit_gb=1.5" in cmd


def test_dense_allreduce_variants_alternate_and_their_ratios_are_printed(
    tmp_path, monkeypatch, capsys
):
    commands: list[list[str]] = []
    _fake_jobs(monkeypatch, commands)
    out = tmp_path / "dist.json"
    argv = ["--ranks", "1,2", "--dense_allreduce", "grouped,top_first", "--repeats", "2"]
    assert bench_distributed.main([*argv, "--json", str(out)]) == 0
    # One process twice (no allreduce, no variant), then 2 ranks A, B, A, B.
    variants = [r["dense_allreduce"] for r in json.loads(out.read_text())["runs"]]
    assert variants == ["grouped", "grouped", "grouped", "top_first", "grouped", "top_first"]
    programs = [c[c.index("--gloo") + 2 :][:4] if "--gloo" in c else c[1:2] for c in commands]
    assert programs[3] == ["-m", "tools.bench", "overlap", "top_first"]
    assert programs[2][0] == programs[0][0] == str(bench_distributed.REPO_ROOT / "dlrm_main.py")
    assert Path(programs[0][0]).is_file()
    printed = capsys.readouterr().out
    assert "2 ranks, top_first / grouped: 1.100, 1.100 (median 1.100)" in printed


def test_unknown_dense_allreduce_variant_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench_distributed.main(["--dense_allreduce", "grouped,overlapped"])
    assert "--dense_allreduce takes distinct variants" in capsys.readouterr().err
