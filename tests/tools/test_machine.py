"""tools.machine: allocator detection, oneDNN's report, the header line."""

from __future__ import annotations

import json

from models.cpu_features import KEY_CPU_FLAGS
from tools import machine

MAPS_GLIBC = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/python3.11
7f1a2c000000-7f1a2c022000 r--p 00000000 08:01 2345 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1a2d000000-7f1a2d100000 r-xp 00000000 08:01 3456 /venv/lib/tensorflow/libtensorflow_framework.so.2
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0 [stack]
"""
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4.5.9"
MAPS_TCMALLOC = MAPS_GLIBC + (
    f"7f1a2e000000-7f1a2e010000 r--p 00000000 08:01 4567 {TCMALLOC}\n"
    f"7f1a2e010000-7f1a2e050000 r-xp 00010000 08:01 4567 {TCMALLOC}\n"
)
MAPS_JEMALLOC = MAPS_GLIBC + (
    "7f1a2f000000-7f1a2f010000 r-xp 00000000 08:01 5678 /usr/lib/libjemalloc.so.2\n"
)


def test_allocator_from_maps() -> None:
    assert machine.detect_allocator(MAPS_GLIBC) == "glibc malloc"
    assert machine.detect_allocator(MAPS_TCMALLOC, TCMALLOC) == (
        f"tcmalloc {TCMALLOC} (LD_PRELOAD={TCMALLOC})"
    )
    assert machine.detect_allocator(MAPS_JEMALLOC) == "jemalloc /usr/lib/libjemalloc.so.2"
    # A preload that did not load (wrong path) leaves glibc's malloc, and says so.
    assert machine.detect_allocator(MAPS_GLIBC, "/no/libtcmalloc.so") == (
        "glibc malloc (LD_PRELOAD=/no/libtcmalloc.so)"
    )
    assert machine.detect_allocator(None) == "unknown"


ONEDNN_VERBOSE = """\
onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support
onednn_verbose,v1,info,gpu,runtime:none
onednn_verbose,v1,primitive,exec,cpu,matmul,brg:avx512_core,undef,src:f32,,,8x8:8x8,0.1
"""


def test_onednn_verbose_info_lines_are_parsed() -> None:
    assert machine.parse_onednn_verbose(ONEDNN_VERBOSE) == {
        "version": "3.7.3",
        "runtime": "threadpool",
        "threads": 2,
        "isa": "Intel AVX-512 with Intel DL Boost and bfloat16 support",
    }
    # Older oneDNN writes no "v1" field; nothing printed leaves every field unknown.
    old = "onednn_verbose,info,oneDNN v3.1.0 (commit abc)\nonednn_verbose,info,cpu,isa:AVX2\n"
    assert machine.parse_onednn_verbose(old)["version"] == "3.1.0"
    assert machine.parse_onednn_verbose(old)["isa"] == "AVX2"
    assert set(machine.parse_onednn_verbose("").values()) == {None}


def test_this_machine_is_described_without_tensorflow() -> None:
    info = machine.describe_machine(with_tensorflow=False)
    json.dumps(info)  # JSON-ready
    assert info["onednn"]["built_in"] is None and info["onednn"]["enabled"] is None
    assert info["logical_cpus"] >= 1
    assert info["usable_cpus"] is None or 1 <= info["usable_cpus"] <= info["logical_cpus"]
    assert info["cpu_flags"] is None or set(info["cpu_flags"]) <= set(KEY_CPU_FLAGS)
    assert info["huge_pages"].startswith("transparent huge pages ")


def _info(**changes: object) -> dict:
    info = {
        "cpu_model": "AMD EPYC 9654 96-Core Processor",
        "cpu_flags": ["avx2", "avx512f", "avx512_bf16"],
        "logical_cpus": 4,
        "usable_cpus": 2,
        "memory_gib": 23.54,
        "python": "3.11.7",
        "tensorflow": "2.21.0",
        "onednn": {"built_in": True, "TF_ENABLE_ONEDNN_OPTS": None, "enabled": True},
        "allocator": "glibc malloc",
        "huge_pages": "transparent huge pages madvise, malloc huge pages on",
        "load_average_1min": 0.5,
        "platform": "linux",
    }
    return {**info, **changes}


def test_header_names_cpu_flags_cores_software() -> None:
    assert machine.format_machine(_info()).splitlines() == [
        "machine: AMD EPYC 9654 96-Core Processor; avx2 avx512f avx512_bf16 "
        "(no avx512_fp16 amx_tile amx_bf16); 4 logical CPUs, 2 usable; 23.5 GiB",
        "software: Python 3.11.7, TensorFlow 2.21.0, oneDNN on (TF_ENABLE_ONEDNN_OPTS=unset; "
        "version not reported); allocator glibc malloc (transparent huge pages "
        "madvise, malloc huge pages on); load average 0.50 at start",
    ]
    off = {"built_in": True, "TF_ENABLE_ONEDNN_OPTS": "0", "enabled": False}
    header = machine.format_machine(
        _info(cpu_flags=None, memory_gib=None, usable_cpus=None, onednn=off)
    )
    assert "; flags unknown; 4 logical CPUs, unknown usable; unknown GiB" in header
    assert "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0;" in header
    reported = {
        "built_in": True,
        "TF_ENABLE_ONEDNN_OPTS": None,
        "enabled": True,
        **machine.parse_onednn_verbose(ONEDNN_VERBOSE),
    }
    assert "oneDNN 3.7.3 on (TF_ENABLE_ONEDNN_OPTS=unset; threadpool runtime, 2 threads, ISA " in (
        machine.format_machine(_info(onednn=reported))
    )
    assert "; none of avx2 " in machine.format_machine(_info(cpu_flags=[]))
