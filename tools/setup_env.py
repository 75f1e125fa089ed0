"""Prepare the Python environment: virtualenv, requirements, TensorFlow, Horovod.

Run by `tools/setup_env.sh` with any Python >= 3.10 (standard library only, so it
works before the virtualenv exists). Each step says what it found; a failing step
says which step failed and what to install.

Environment variables (see DEVELOPERS.md):
  DLRM_VENV             virtualenv to create or reuse
  DLRM_CACHE_DIR        cache of built Horovod wheels
  DLRM_TF_PACKAGE       TensorFlow to install when none is importable
  DLRM_HOROVOD_VERSION  Horovod version built when `horovod.tensorflow` does not import
  DLRM_WITH_SPARK       1: also install requirements-spark.txt (the Spark engine of preproc)
"""

from __future__ import annotations

import json
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

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "dlrm_tf2"
DEFAULT_TF_PACKAGE = "tensorflow-cpu==2.21.0"
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
_PROBE_TF = "import tensorflow as tf; print(tf.__version__)"
_PROBE_HVD = "import horovod, horovod.tensorflow; print(horovod.__version__)"


class SetupError(RuntimeError):
    """A set-up step failed; the message says which and what to do."""


def log(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def probe(python: str | Path, code: str) -> str | None:
    """Runs `code` with `python`; returns its last stdout line, or None if it failed."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        out = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, env=env, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1].strip() if out.returncode == 0 and lines else None


def detect_tensorflow(python: str | Path) -> str | None:
    """Version of the TensorFlow that `python` imports, or None."""
    return probe(python, _PROBE_TF)


# Prints the vendor stack of the interpreter as a JSON list (see `vendor_stack`).
_PROBE_STACK = r"""
import json, re
from importlib import metadata
def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()
dists = {}
for dist in metadata.distributions():
    if dist.metadata["Name"]:
        dists.setdefault(norm(dist.metadata["Name"]), dist)
roots = [n for n in dists if n.startswith("tensorflow") or n in ("keras", "tf-keras", "horovod")]
stack = set(roots)
for root in roots:
    for requirement in dists[root].requires or []:
        if re.search(r"extra\s*==", requirement):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match and norm(match.group(0)) in dists:
            stack.add(norm(match.group(0)))
print(json.dumps(sorted(stack)))
"""


def vendor_stack(python: str | Path) -> set[str]:
    """Normalised names of the packages of `python`'s TensorFlow/Keras/Horovod stack.

    The installed distributions named tensorflow*, keras, tf-keras and horovod
    plus their direct requirements (numpy, protobuf, h5py, ml-dtypes, ...):
    what the image's TensorFlow was built and tested against. Packages further
    away (e.g. Pygments, under keras -> rich) may be upgraded inside the
    virtualenv, which shadows and never modifies the image's copy.
    """
    out = probe(python, _PROBE_STACK)
    if out is None:
        raise SetupError(f"step 'requirements': could not list the packages of {python}")
    return set(json.loads(out))


def requirement_name(line: str) -> str | None:
    """Normalised project name of a requirements.txt line (None for comments/blank lines)."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    if match is None:
        raise SetupError(f"requirements.txt: cannot parse line {line!r}")
    return normalise(match.group(0))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirements(
    lines: list[str], preinstalled: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Separates requirements to install from those a vendor image already provides.

    Args:
      lines: lines of requirements.txt.
      preinstalled: normalised name -> version of packages importable from the base
        interpreter (only used when TensorFlow came with the image: those packages are
        part of the vendor stack and must not be replaced).

    Returns:
      (requirement lines to install, {name: existing version} reused as they are).
    """
    install, reused = [], {}
    for line in lines:
        name = requirement_name(line)
        if name is None:
            continue
        if name in preinstalled:
            reused[name] = preinstalled[name]
        else:
            install.append(line.split("#", 1)[0].strip())
    return install, reused


def constraints_for(preinstalled: dict[str, str]) -> str:
    """A pip constraints file pinning every preinstalled package to its version."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(preinstalled.items()))


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


def run(step: str, cmd: list[str], hint: str, env: dict | None = None, cwd=None) -> None:
    """Runs a command of set-up step `step`; on failure raises with the hint."""
    log(f"{step}: {' '.join(cmd)}")
    result = subprocess.run(cmd, env=env, cwd=cwd)
    if result.returncode != 0:
        raise SetupError(f"step '{step}' failed (exit {result.returncode}): {hint}")


class Environment:
    """The virtualenv being prepared."""

    def __init__(self, venv: Path, cache_dir: Path) -> None:
        self.venv = venv
        self.cache_dir = cache_dir
        self.python = venv / "bin" / "python"

    def pip(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "pip", "--disable-pip-version-check", *args]

    def create(self, base_python: str, system_site_packages: bool) -> None:
        cfg = self.venv / "pyvenv.cfg"
        if cfg.exists() and self.python.exists():
            shares = "include-system-site-packages = true" in cfg.read_text()
            if shares != system_site_packages:
                raise SetupError(
                    f"virtualenv {self.venv} was created "
                    f"{'with' if shares else 'without'} the system site-packages, but the base "
                    f"Python {'has no' if shares else 'has a'} TensorFlow now; remove it "
                    f"(rm -r {self.venv}) or set DLRM_VENV to another path"
                )
            log(f"virtualenv: reusing {self.venv}")
            return
        cmd = [base_python, "-m", "venv", str(self.venv)]
        if system_site_packages:
            cmd.insert(3, "--system-site-packages")
        run("virtualenv", cmd, "install the venv module (Debian: apt-get install python3-venv)")

    def installed(self) -> dict[str, str]:
        out = subprocess.run(
            self.pip("list", "--format=json"), capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise SetupError(f"step 'pip list' failed: {out.stderr.strip()}")
        return {normalise(p["name"]): p["version"] for p in json.loads(out.stdout)}


def setup_tensorflow(env: Environment, base_tf: str | None) -> str:
    """Returns the TensorFlow version used, installing one only when none imports."""
    if base_tf is not None:
        log(f"tensorflow: using the preinstalled TensorFlow {base_tf} (not reinstalled)")
        return base_tf
    venv_tf = detect_tensorflow(env.python)
    if venv_tf is not None:
        log(f"tensorflow: {venv_tf} already in the virtualenv")
        return venv_tf
    package = os.environ.get("DLRM_TF_PACKAGE", DEFAULT_TF_PACKAGE)
    run(
        "tensorflow",
        env.pip("install", package),
        f"could not install {package}; check network access to PyPI or set DLRM_TF_PACKAGE",
    )
    version = detect_tensorflow(env.python)
    if version is None:
        raise SetupError(f"step 'tensorflow' failed: {package} installed but does not import")
    return version


def setup_requirements(env: Environment, base_tf: str | None) -> None:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    preinstalled = env.installed() if base_tf is not None else {}
    install, reused = split_requirements(lines, preinstalled)
    for name, version in sorted(reused.items()):
        log(f"requirements: keeping preinstalled {name}=={version}")
    if not install:
        return
    # Pinned: the image's TensorFlow stack. Other preinstalled packages (system
    # tools' libraries) may be shadowed by newer versions inside the venv.
    stack = vendor_stack(env.python) if preinstalled else set()
    pinned = {name: version for name, version in preinstalled.items() if name in stack}
    if pinned:
        log(f"requirements: pinning the preinstalled stack: {', '.join(sorted(pinned))}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write(constraints_for(pinned))
    try:
        run(
            "requirements",
            env.pip("install", "-q", "-c", constraints.name, *install),
            "pip could not install requirements.txt (see the pip error above; with a "
            "preinstalled TensorFlow, a requirement may conflict with the image's packages)",
        )
    finally:
        os.unlink(constraints.name)


def spark_requested(environ: dict[str, str]) -> bool:
    """The Spark engine's packages are installed only on request (``DLRM_WITH_SPARK=1``)."""
    value = environ.get("DLRM_WITH_SPARK", "").strip().lower()
    if value not in ("", "0", "1", "true", "false", "yes", "no"):
        raise SetupError(f"DLRM_WITH_SPARK must be 1 or 0, got {value!r}")
    return value in ("1", "true", "yes")


def setup_spark(env: Environment) -> None:
    if not spark_requested(dict(os.environ)):
        return
    run(
        "spark",
        env.pip("install", "-q", "-r", str(REPO_ROOT / "requirements-spark.txt")),
        "pip could not install requirements-spark.txt (see the pip error above)",
    )
    if shutil.which("java") is None:
        log(
            "spark: PySpark installed, but no java on PATH: the Spark engine and its tests "
            "need Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
        )
    else:
        log("spark: PySpark installed (requirements-spark.txt)")


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
        with tarfile.open(sdists[0]) as tar:
            tar.extractall(tmp_path, filter="data")
        src = tmp_path / f"horovod-{version}"
        cmake_file = src / "horovod" / "tensorflow" / "CMakeLists.txt"
        patched, removed = patch_horovod_cmake(cmake_file.read_text())
        cmake_file.write_text(patched)
        log(f"horovod build: removed {removed} xla_mpi_ops.cc line(s) from {cmake_file.name}")
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
        key = horovod_cache_key(
            version, tf_version, platform.python_version(), platform.machine(), gpu_ops
        )
        cached = env.cache_dir / "wheels" / key
        wheels = sorted(cached.glob("horovod-*.whl"))
        if wheels:
            log(f"horovod: installing cached wheel {wheels[0]}")
            wheel = wheels[0]
        else:
            log(f"horovod: no cached wheel for {key}; building from source (a few minutes)")
            wheel = build_horovod_wheel(env, version, gpu_ops, cached)
            log(f"horovod: cached {wheel}")
        # With its declared dependencies (cloudpickle, psutil, pyyaml, packaging).
        run(
            "horovod install",
            env.pip("install", "-q", str(wheel)),
            f"could not install {wheel} or its dependencies; remove {cached} to force a rebuild",
        )
        found = probe(env.python, _PROBE_HVD)
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


def setup_shellcheck() -> None:
    if shutil.which("shellcheck"):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        log("shellcheck: missing; install it (Debian: apt-get install shellcheck) for the tests")
        return
    quiet = {"stdout": subprocess.DEVNULL}
    if subprocess.run(["apt-get", "install", "-y", "-q", "shellcheck"], **quiet).returncode:
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        run(
            "shellcheck",
            ["apt-get", "install", "-y", "-q", "shellcheck"],
            "apt-get install shellcheck failed",
        )
    log("shellcheck: installed from Debian")


def main() -> int:
    venv = Path(os.environ.get("DLRM_VENV", DEFAULT_CACHE_DIR / "venv")).expanduser()
    cache_dir = Path(os.environ.get("DLRM_CACHE_DIR", DEFAULT_CACHE_DIR)).expanduser()
    env = Environment(venv, cache_dir)
    try:
        base_tf = detect_tensorflow(sys.executable)
        env.create(sys.executable, system_site_packages=base_tf is not None)
        tf_version = setup_tensorflow(env, base_tf)
        setup_requirements(env, base_tf)
        setup_spark(env)
        setup_horovod(env, tf_version)
        setup_shellcheck()
    except SetupError as error:
        print(f"[setup] ERROR: {error}", file=sys.stderr)
        return 1
    log(f"ready: {env.python} (TensorFlow {tf_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
