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
  DLRM_WITH_DOCKER      1: also install a Docker engine and debootstrap (the Docker test tier)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__:  # run as `python -m tools.setup_env` or imported (the tests)
    from .setup_common import Environment, SetupError, log, normalise, probe, run
    from .setup_horovod import setup_horovod
else:  # run as a script by tools/setup_env.sh: tools/ is sys.path[0]
    from setup_common import Environment, SetupError, log, normalise, probe, run
    from setup_horovod import setup_horovod

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "dlrm_tf2"
DEFAULT_TF_PACKAGE = "tensorflow-cpu==2.21.0"
# Pythons DEFAULT_TF_PACKAGE has wheels for; a preinstalled TensorFlow may bring another.
SUPPORTED_PYTHONS = ((3, 10), (3, 13))
TESTED_PYTHONS = "3.11.2 (Debian 12), 3.11.7 and 3.13.5 (Debian 13)"
_PROBE_TF = "import tensorflow as tf; print(tf.__version__)"


def python_problem(version: tuple[int, ...], base_tf: str | None) -> str | None:
    """Why the set-up cannot use a Python of this version, or None when it can."""
    low, high = SUPPORTED_PYTHONS
    if tuple(version[:2]) < low or (base_tf is None and tuple(version[:2]) > high):
        found = ".".join(str(part) for part in version[:3])
        return (
            f"Python {found} is not supported: use Python {low[0]}.{low[1]} to "
            f"{high[0]}.{high[1]} (tested: {TESTED_PYTHONS}), e.g. DLRM_PYTHON=python3.11"
        )
    return None


def base_interpreter() -> str:
    """The interpreter the virtualenv is made from: this one, or, when this one runs inside
    a virtualenv (the project's own, first on PATH as in the Docker image, or another), the
    interpreter that virtualenv was made from. A virtualenv made from a virtualenv's Python
    is linked to the base interpreter anyway, so that is the one whose packages count."""
    if sys.prefix != sys.base_prefix:
        base = getattr(sys, "_base_executable", None)
        if base and Path(base).exists():
            return base
    return sys.executable


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


def requested(environ: dict[str, str], name: str) -> bool:
    """Optional parts are installed only on request (``DLRM_WITH_SPARK=1``, ...)."""
    value = environ.get(name, "").strip().lower()
    if value not in ("", "0", "1", "true", "false", "yes", "no"):
        raise SetupError(f"{name} must be 1 or 0, got {value!r}")
    return value in ("1", "true", "yes")


def setup_spark(env: Environment) -> None:
    if not requested(dict(os.environ), "DLRM_WITH_SPARK"):
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


def apt_install(step: str, packages: list[str], hint: str) -> bool:
    """Installs Debian packages when this is root on Debian/Ubuntu; False when it cannot."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        log(f"{step}: missing; {hint} (Debian: apt-get install {' '.join(packages)})")
        return False
    quiet = {"stdout": subprocess.DEVNULL}
    cmd = ["apt-get", "install", "-y", "-q", *packages]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env, **quiet).returncode:
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        run(step, cmd, f"apt-get install {' '.join(packages)} failed", env=env)
    log(f"{step}: installed {', '.join(packages)} from the distribution")
    return True


def setup_shellcheck() -> None:
    if not shutil.which("shellcheck"):
        apt_install("shellcheck", ["shellcheck"], "the tests lint the shell scripts with it")


def setup_docker() -> None:
    """A Docker engine and debootstrap for the Docker tier of the tests (DLRM_WITH_DOCKER=1)."""
    if not requested(dict(os.environ), "DLRM_WITH_DOCKER"):
        return
    missing = [
        package
        for package, command in (("docker.io", "dockerd"), ("debootstrap", "debootstrap"))
        if not shutil.which(command)
    ]
    if missing and not apt_install("docker", missing, "the Docker tier of the tests needs them"):
        raise SetupError(
            f"DLRM_WITH_DOCKER=1: {', '.join(missing)} missing and not installable here "
            "(needs root and apt-get)"
        )
    if not missing:
        log("docker: dockerd and debootstrap found")


def main() -> int:
    venv = Path(os.environ.get("DLRM_VENV", DEFAULT_CACHE_DIR / "venv")).expanduser()
    cache_dir = Path(os.environ.get("DLRM_CACHE_DIR", DEFAULT_CACHE_DIR)).expanduser()
    env = Environment(venv, cache_dir)
    try:
        base_python = base_interpreter()
        base_tf = detect_tensorflow(base_python)
        problem = python_problem(sys.version_info, base_tf)
        if problem:
            raise SetupError(problem)
        env.create(base_python, system_site_packages=base_tf is not None)
        tf_version = setup_tensorflow(env, base_tf)
        setup_requirements(env, base_tf)
        setup_spark(env)
        setup_horovod(env, tf_version)
        setup_shellcheck()
        setup_docker()
    except SetupError as error:
        print(f"[setup] ERROR: {error}", file=sys.stderr)
        return 1
    log(f"ready: {env.python} (TensorFlow {tf_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
