"""Horovod for the virtualenv: reuse an importable one, or build, cache and install a wheel.

Part of the set-up run by `tools/setup_env.sh` (standard library only). Horovod 0.28.1
needs workarounds to build against TensorFlow 2.21 (DEVELOPERS.md, "Environment").
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

if __package__:  # imported as tools.setup_horovod
    from .setup_common import Environment, SetupError, log, probe, run
else:  # imported by tools/setup_env.py run as a script: tools/ is sys.path[0]
    from setup_common import Environment, SetupError, log, probe, run

DEFAULT_HOROVOD_VERSION = "0.28.1"
HOROVOD_BUILD_TOOLS = ("cmake", "setuptools", "wheel", "packaging")
HOROVOD_BUILD_ENV = {
    "HOROVOD_WITH_TENSORFLOW": "1",
    "HOROVOD_WITH_GLOO": "1",
    "HOROVOD_WITHOUT_MPI": "1",
    "HOROVOD_WITHOUT_PYTORCH": "1",
    "HOROVOD_WITHOUT_MXNET": "1",
    # Horovod 0.28.1's CMakeLists predate CMake 4, which refuses policies < 3.5.
    "CMAKE_POLICY_VERSION_MINIMUM": "3.5",
}
_PROBE_HVD = "import horovod, horovod.tensorflow; print(horovod.__version__)"


def gpu_operations() -> str:
    """Collective backends to compile into Horovod: "gloo", or "gloo-nccl" with a GPU.

    A CUDA toolkit alone is not enough (machines without a GPU may ship one, and
    Horovod's CMake then fails on a partial toolkit), so NCCL is chosen only when
    `nvidia-smi -L` lists a GPU, or when DLRM_HOROVOD_GPU_OPERATIONS=NCCL asks for it.
    """
    requested = os.environ.get("DLRM_HOROVOD_GPU_OPERATIONS", "").upper()
    if requested:
        if requested not in ("NCCL", "NONE"):
            raise SetupError(f"DLRM_HOROVOD_GPU_OPERATIONS must be NCCL or NONE, got {requested!r}")
        return "gloo-nccl" if requested == "NCCL" else "gloo"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "gloo"
    return "gloo-nccl" if out.returncode == 0 and "GPU" in out.stdout else "gloo"


def horovod_cache_key(
    horovod_version: str, tf_version: str, python_version: str, machine: str, gpu_ops: str
) -> str:
    """Directory name of a cached Horovod wheel.

    A wheel built against one TensorFlow does not load with another (the C++ ABI of
    the framework library changes), so the key names both versions, the interpreter,
    the architecture and the collective backends compiled in.
    """
    for part in (horovod_version, tf_version, python_version, machine, gpu_ops):
        if not part or "/" in part or " " in part:
            raise SetupError(f"invalid Horovod cache key part {part!r}")
    return f"horovod-{horovod_version}-tf{tf_version}-py{python_version}-{machine}-{gpu_ops}"


def patch_horovod_cmake(text: str) -> tuple[str, int]:
    """Drops the XLA op source from horovod/tensorflow/CMakeLists.txt.

    Its XLA includes no longer exist in TensorFlow 2.21; the ops it registers are
    only used with XLA-compiled Horovod collectives, which this project does not use.

    Returns:
      (patched text, number of lines removed).
    """
    kept, removed = [], 0
    for line in text.splitlines(keepends=True):
        if "xla_mpi_ops.cc" in line:
            removed += 1
        else:
            kept.append(line)
    return "".join(kept), removed


# Standard headers that Horovod 0.28.1 uses without including them. GCC 12's libstdc++
# reached them through other standard headers; GCC 14's no longer does, and the compiler
# names each of these files (std::logic_error, std::string undeclared).
HOROVOD_MISSING_INCLUDES: dict[str, tuple[str, ...]] = {
    "horovod/common/common.h": ("stdexcept",),
    "horovod/common/group_table.h": ("string",),
}
FLATBUFFERS_STL_EMULATION = "third_party/flatbuffers/include/flatbuffers/stl_emulation.h"


def add_missing_includes(text: str, headers: tuple[str, ...]) -> tuple[str, list[str]]:
    """Adds ``#include <header>`` for each of `headers` that `text` does not include yet.

    The lines go just before the file's first ``#include``, below its licence comment.

    Returns:
      (patched text, headers added).
    """
    missing = [
        h
        for h in headers
        if not re.search(rf"^[ \t]*#[ \t]*include[ \t]*<{re.escape(h)}>", text, re.M)
    ]
    if not missing:
        return text, []
    first = re.search(r"^[ \t]*#[ \t]*include\b", text, re.M)
    at = first.start() if first else 0
    lines = "".join(f"#include <{h}>\n" for h in missing)
    return text[:at] + lines + text[at:], missing


# flatbuffers::span (vendored flatbuffers 2.0) declares a copy assignment that assigns its
# const members and returns nothing. GCC 14 rejects the assignment to the non-dependent
# `const size_type count_` even uninstantiated; the members become non-const and the
# operator returns *this, so it is a working assignment (std::span is assignable too).
_SPAN_EDITS = (
    (re.compile(r"\bpointer\s+const\s+data_;"), "pointer data_;"),
    (re.compile(r"\bconst\s+size_type\s+count_;"), "size_type count_;"),
    (
        re.compile(r"(\n([ \t]*)count_\s*=\s*other\.count_;)(\s*\})"),
        r"\1\n\2return *this;\3",
    ),
)


def patch_flatbuffers_span(text: str) -> tuple[str, int]:
    """Makes ``flatbuffers::span::operator=`` valid C++ in flatbuffers' stl_emulation.h.

    Returns:
      (patched text, number of edits made: 3 on the original file, 0 once patched).
    """
    edits = 0
    for pattern, replacement in _SPAN_EDITS:
        text, count = pattern.subn(replacement, text)
        edits += count
    return text, edits


def patch_horovod_source(src: Path) -> None:
    """Applies every source fix to the unpacked sdist in `src`, logging what each changed.

    A fix whose file or pattern is missing (another Horovod version) is logged with a
    count of 0, not an error: the build then fails only if it needed that fix, and the
    compiler names the file.
    """
    cmake_file = src / "horovod" / "tensorflow" / "CMakeLists.txt"
    patched, removed = patch_horovod_cmake(cmake_file.read_text())
    cmake_file.write_text(patched)
    log(f"horovod build: removed {removed} xla_mpi_ops.cc line(s) from {cmake_file.name}")
    for rel, headers in HOROVOD_MISSING_INCLUDES.items():
        path = src / rel
        if not path.exists():
            log(f"horovod build: {rel} not found; no includes added")
            continue
        patched, added = add_missing_includes(path.read_text(), headers)
        path.write_text(patched)
        names = ", ".join(f"<{h}>" for h in added) or "none (already included)"
        log(f"horovod build: added {len(added)} include(s) to {rel}: {names}")
    path = src / FLATBUFFERS_STL_EMULATION
    if path.exists():
        patched, edits = patch_flatbuffers_span(path.read_text())
        path.write_text(patched)
        log(
            f"horovod build: {edits} of 3 flatbuffers::span edit(s) in {path.name} "
            "(members non-const, operator= returns *this; 0 when already patched)"
        )
    else:
        log(f"horovod build: {FLATBUFFERS_STL_EMULATION} not found; span not patched")


def summarise_check_build(text: str) -> str:
    """One line out of `horovodrun --check-build`: enabled items of each section."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Available ") and line.endswith(":"):
            current = line.removeprefix("Available ").removesuffix(":")
            sections[current] = []
        elif current and line.startswith("[X]"):
            sections[current].append(line[3:].strip())
    return "; ".join(f"{name}: {', '.join(items) or 'none'}" for name, items in sections.items())


def missing_build_tools() -> list[str]:
    """Debian packages missing to compile Horovod (empty when all are there)."""
    missing = []
    if not (shutil.which("c++") or shutil.which("g++")):
        missing.append("g++")
    if not shutil.which("make"):
        missing.append("make")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        missing.append(f"python{sys.version_info[0]}.{sys.version_info[1]}-dev")
    return missing


def build_horovod_wheel(env: Environment, version: str, gpu_ops: str, out_dir: Path) -> Path:
    missing = missing_build_tools()
    if missing:
        raise SetupError(
            "step 'horovod build' needs a C++ toolchain and Python headers; missing: "
            f"{', '.join(missing)} (Debian: apt-get install {' '.join(missing)} cmake)"
        )
    run(
        "horovod build tools",
        env.pip("install", "-q", *HOROVOD_BUILD_TOOLS),
        "pip could not install cmake/setuptools/wheel/packaging",
    )
    with tempfile.TemporaryDirectory(prefix="horovod-build-") as tmp:
        tmp_path = Path(tmp)
        run(
            "horovod sdist",
            env.pip(
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"horovod=={version}",
                "-d",
                str(tmp_path),
            ),
            f"could not download the horovod=={version} sdist from PyPI",
        )
        sdists = list(tmp_path.glob("horovod-*.tar.gz"))
        if len(sdists) != 1:
            raise SetupError(f"step 'horovod sdist': expected one sdist, found {sdists}")
        extract_sdist(sdists[0], tmp_path)
        src = tmp_path / f"horovod-{version}"
        patch_horovod_source(src)
        build_env = dict(os.environ, **HOROVOD_BUILD_ENV)
        build_env["PATH"] = f"{env.venv / 'bin'}{os.pathsep}{build_env.get('PATH', '')}"
        if gpu_ops == "gloo-nccl":
            build_env["HOROVOD_GPU_OPERATIONS"] = "NCCL"
        wheel_dir = tmp_path / "wheel"
        run(
            "horovod build",
            env.pip("wheel", "--no-build-isolation", "--no-deps", "-w", str(wheel_dir), str(src)),
            "the Horovod build failed (see the compiler output above); it needs g++, make, "
            "cmake and the TensorFlow headers of the installed TensorFlow",
            env=build_env,
        )
        wheels = list(wheel_dir.glob("horovod-*.whl"))
        if len(wheels) != 1:
            raise SetupError(f"step 'horovod build': expected one wheel, found {wheels}")
        # Rename into place only once complete so an interrupted build leaves no cache entry.
        staging = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(wheels[0], staging / wheels[0].name)
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    return out_dir / wheels[0].name


def extract_sdist(archive: Path, dest: Path) -> None:
    """Unpacks a source archive into `dest`, refusing members that would land outside it.

    ``extractall(filter="data")`` does this, but exists only from Python 3.11.4 and
    3.10.12 (Debian 12 ships 3.11.2), so older interpreters get the same checks here:
    regular files, directories and links whose path and target stay inside `dest`.
    """
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(dest, filter="data")
            except tarfile.FilterError as error:
                raise SetupError(
                    f"step 'horovod sdist': refusing to unpack {archive.name}: {error}"
                ) from error
            return
        root = dest.resolve()
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            link = None
            if member.issym():
                link = (target.parent / member.linkname).resolve()
            elif member.islnk():
                link = (root / member.linkname).resolve()
            bad = not (member.isfile() or member.isdir() or member.issym() or member.islnk())
            for path in (target, link):
                if path is not None and path != root and root not in path.parents:
                    bad = True
            if bad:
                raise SetupError(
                    f"step 'horovod sdist': refusing to unpack {archive.name}: member "
                    f"{member.name!r} is not a file, directory or link inside {dest}"
                )
        tar.extractall(dest)  # every member was checked above


def install_horovod_wheel(
    env: Environment, wheel: Path, cached: Path, replace: bool = False
) -> str | None:
    """Installs `wheel` with its declared dependencies (cloudpickle, psutil, pyyaml,
    packaging), or in place of an installed one of the same version (`replace`); returns
    the version that imports, or None when it does not import."""
    args = ["install", "-q", *(["--force-reinstall", "--no-deps"] if replace else []), str(wheel)]
    run("horovod install", env.pip(*args), f"could not install {wheel}; remove {cached}")
    return probe(env.python, _PROBE_HVD)


def write_horovodrun(path: Path, python: Path) -> None:
    """A ``horovodrun`` launcher in the venv for a Horovod the image preinstalled.

    The image's own ``horovodrun`` may not be on PATH (or may run another
    interpreter); this one is what ``horovodrun`` does, with the venv's Python,
    so activating the venv is enough for the run scripts and the tests.
    """
    path.write_text(f'#!/bin/sh\nexec "{python}" -m horovod.runner.launch "$@"\n')
    path.chmod(0o755)


def setup_horovod(env: Environment, tf_version: str) -> None:
    found = probe(env.python, _PROBE_HVD)
    if found is None:
        version = os.environ.get("DLRM_HOROVOD_VERSION", DEFAULT_HOROVOD_VERSION)
        gpu_ops = gpu_operations()
        # The interpreter's minor version: the extension ABI is the same across patch releases.
        python_version = "{}.{}".format(*sys.version_info[:2])
        key = horovod_cache_key(version, tf_version, python_version, platform.machine(), gpu_ops)
        cached = env.cache_dir / "wheels" / key
        wheels = sorted(cached.glob("horovod-*.whl"))
        if wheels:
            log(f"horovod: installing cached wheel {wheels[0]}")
            found = install_horovod_wheel(env, wheels[0], cached)
            if found is None:  # e.g. a wheel copied from a system with another C++ library
                log(f"horovod: the cached wheel does not import here; rebuilding {key}")
        if found is None:
            log(f"horovod: no usable cached wheel for {key}; building from source (minutes)")
            wheel = build_horovod_wheel(env, version, gpu_ops, cached)
            log(f"horovod: cached {wheel}")
            found = install_horovod_wheel(env, wheel, cached, replace=bool(wheels))
        if found is None:
            raise SetupError(
                f"step 'horovod': the installed wheel does not import; remove {cached} and rerun"
            )
    else:
        log("horovod: horovod.tensorflow already imports")
    horovodrun = env.venv / "bin" / "horovodrun"
    if not horovodrun.exists():
        write_horovodrun(horovodrun, env.python)
        log(f"horovod: wrote {horovodrun} (the preinstalled Horovod, run by the venv's Python)")
    cmd = [str(horovodrun), "--check-build"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    if result.returncode != 0:
        raise SetupError(f"step 'horovod check': {' '.join(cmd)} failed: {result.stderr.strip()}")
    log(f"horovod {found}: {summarise_check_build(result.stdout)}")
