"""Where a benchmark ran: CPU, cores, memory, TensorFlow, oneDNN, allocator, load.

Every benchmark prints `format_machine(describe_machine())` above its report and
stores the dict in its JSON output, so a figure always names the machine it was
measured on. Throughput on CPU depends on what the vector units support (AVX-512
and its bfloat16 instructions, AMX tiles), on the cores this process may use, on
oneDNN being on, and on the memory allocator and its use of transparent huge pages
(`models.huge_pages`); these are the fields.

Reads ``/proc/cpuinfo`` (through `models.cpu_features`), ``/proc/meminfo`` and
``/proc/self/maps`` on Linux; elsewhere the CPU name comes from `platform.processor()`
and flags, memory and allocator are None (unknown). TensorFlow is imported only when
asked (``with_tensorflow``), so that benchmarks which never load it stay light.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from models.cpu_features import KEY_CPU_FLAGS, parse_cpuinfo, read_cpuinfo
from models.huge_pages import huge_pages_state

# The pip packages that install the `tensorflow` module on CPU machines.
_TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel")
# Shared-library name -> allocator, as it appears in /proc/self/maps when loaded.
_ALLOCATOR_LIBRARIES = (
    ("libtcmalloc", "tcmalloc"),
    ("libjemalloc", "jemalloc"),
    ("libmimalloc", "mimalloc"),
)


def detect_allocator(maps_text: str | None, ld_preload: str = "") -> str:
    """The malloc this process uses: a preloaded/linked tcmalloc, jemalloc, mimalloc or glibc.

    Args:
        maps_text: contents of ``/proc/self/maps`` (None where there is none).
        ld_preload: the ``LD_PRELOAD`` variable, named in the answer when set.

    An allocator library mapped into the process replaces glibc's malloc
    (preloaded, or linked by a library); with none mapped on Linux it is
    glibc's. Without maps the answer is "unknown".
    """
    preload = f" (LD_PRELOAD={ld_preload})" if ld_preload else ""
    if maps_text is None:
        return "unknown" + preload
    for library, name in _ALLOCATOR_LIBRARIES:
        if library in maps_text:
            paths = sorted({ln.split()[-1] for ln in maps_text.splitlines() if library in ln})
            return f"{name} {paths[0]}{preload}"
    return "glibc malloc" + preload


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _memory_gib() -> float | None:
    meminfo = _read("/proc/meminfo")
    for line in (meminfo or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / 2**30  # the value is in kB
    return None


def _usable_cpus() -> int | None:
    """Cores this process may run on (its affinity mask; a container may cut it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return None


_ONEDNN_PROBE = "import tensorflow as tf; tf.matmul(tf.ones([8, 8]), tf.ones([8, 8])).numpy()"


def parse_onednn_verbose(text: str) -> dict[str, Any]:
    """Version, CPU runtime, threads and ISA from oneDNN's verbose ``info`` lines."""
    found: dict[str, Any] = {"version": None, "runtime": None, "threads": None, "isa": None}
    for line in text.splitlines():
        fields = line.strip().split(",")
        if fields[0] != "onednn_verbose" or "info" not in fields:
            continue
        rest = fields[fields.index("info") + 1 :]
        if rest and rest[0].startswith("oneDNN v"):
            found["version"] = rest[0].split()[1].lstrip("v")
        elif rest[:1] == ["cpu"]:
            for item in rest[1:]:
                key, _, value = item.partition(":")
                if key == "runtime":
                    found["runtime"] = value
                elif key == "nthr" and value.isdigit():
                    found["threads"] = int(value)
                elif key == "isa":
                    found["isa"] = value
    return found


def _onednn_verbose() -> dict[str, Any]:
    """oneDNN's own report, from one small matmul in a child process with ONEDNN_VERBOSE=1.

    A child because oneDNN reads the variable once and would then log every
    primitive of this process. About 3 s (TensorFlow's import).
    """
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _ONEDNN_PROBE],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return parse_onednn_verbose("")
    return parse_onednn_verbose(done.stdout)


def _onednn(with_tensorflow: bool) -> dict[str, Any]:
    """oneDNN: built into TensorFlow, the opt-out variable, on or off, and its own report.

    ``built_in`` uses TensorFlow's private ``IsMklEnabled`` (None if missing or
    TensorFlow not loaded); oneDNN's ops are on when it is built in and
    ``TF_ENABLE_ONEDNN_OPTS`` is not "0" (the default of x86 Linux builds).
    TensorFlow does not expose the bundled oneDNN's version; when oneDNN is on,
    ``version``, ``runtime``, ``threads`` and ``isa`` (the instruction set its
    kernels use here) come from its verbose mode in a child process.
    """
    env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    built_in: bool | None = None
    if with_tensorflow:
        try:
            from tensorflow.python.util import _pywrap_util_port

            built_in = bool(_pywrap_util_port.IsMklEnabled())
        except ImportError:
            built_in = None
    enabled = None if built_in is None else built_in and env != "0"
    report = _onednn_verbose() if enabled else parse_onednn_verbose("")
    return {"built_in": built_in, "TF_ENABLE_ONEDNN_OPTS": env, "enabled": enabled, **report}


def _tensorflow_version(with_tensorflow: bool) -> str | None:
    if with_tensorflow:
        import tensorflow as tf

        return tf.__version__
    for distribution in _TENSORFLOW_DISTRIBUTIONS:  # the installed version, not imported
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def describe_machine(with_tensorflow: bool = True) -> dict[str, Any]:
    """This machine and process, as a JSON-ready dict (see the module docstring).

    Args:
        with_tensorflow: import TensorFlow to ask it about oneDNN; if False the
            version is the installed package's and ``onednn.built_in`` is None.
    """
    cpuinfo = read_cpuinfo()
    model, flags = parse_cpuinfo(cpuinfo) if cpuinfo is not None else (None, None)
    return {
        "cpu_model": model or platform.processor() or platform.machine() or None,
        "cpu_flags": list(flags) if flags is not None else None,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "tensorflow": _tensorflow_version(with_tensorflow),
        "onednn": _onednn(with_tensorflow),
        "allocator": detect_allocator(_read("/proc/self/maps"), os.environ.get("LD_PRELOAD", "")),
        "huge_pages": huge_pages_state(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": sys.platform,
    }


def _unknown(value: Any, fmt: str = "{}") -> str:
    return "unknown" if value is None else fmt.format(value)


def format_machine(info: dict[str, Any]) -> str:
    """The two-line header of a benchmark report, from `describe_machine`'s dict."""
    flags = info["cpu_flags"]
    if flags is None:
        flag_text = "flags unknown"
    else:
        missing = [f for f in KEY_CPU_FLAGS if f not in flags]
        flag_text = " ".join(flags) or "none of " + " ".join(KEY_CPU_FLAGS)
        flag_text += f" (no {' '.join(missing)})" if missing and flags else ""
    onednn = info["onednn"]
    env = f"TF_ENABLE_ONEDNN_OPTS={onednn['TF_ENABLE_ONEDNN_OPTS'] or 'unset'}"
    if onednn["built_in"] is None:
        onednn_text = f"not checked ({env})"
    elif not onednn["enabled"] or not onednn.get("version"):
        state = "on" if onednn["enabled"] else "off"
        onednn_text = f"{state} ({env}; version not reported)"
    else:
        onednn_text = (
            f"{onednn['version']} on ({env}; {onednn.get('runtime')} runtime, "
            f"{onednn.get('threads')} threads, ISA {onednn.get('isa')})"
        )
    return "\n".join(
        [
            f"machine: {_unknown(info['cpu_model'])}; {flag_text}; "
            f"{_unknown(info['logical_cpus'])} logical CPUs, "
            f"{_unknown(info['usable_cpus'])} usable; "
            f"{_unknown(info['memory_gib'], '{:.1f}')} GiB",
            f"software: Python {info['python']}, TensorFlow {_unknown(info['tensorflow'])}, "
            f"oneDNN {onednn_text}; allocator {info['allocator']} "
            f"({info.get('huge_pages', 'huge pages not recorded')}); "
            f"load average {_unknown(info['load_average_1min'], '{:.2f}')} at start",
        ]
    )
