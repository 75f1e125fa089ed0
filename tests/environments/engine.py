"""A Docker engine and Debian base images for the environment tiers (tests/environments).

The engine is used when it answers, started when it is installed but not running and the user
is root, and otherwise the tier is skipped with the reason, or fails when the tier was asked
for (``DLRM_WITH_DOCKER=1``). Base images come from a registry when one is reachable, else
they are made with ``debootstrap --variant=minbase`` from the mirror apt uses here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def _answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def engine_problem() -> str | None:
    """Why no Docker engine can be used here (None: one answers, started if need be)."""
    if shutil.which("docker") is None:
        return "no docker command (DLRM_WITH_DOCKER=1 bash tools/setup_env.sh installs the engine)"
    if _answers():
        return None
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        return "a docker client but no engine (dockerd) on this machine"
    if os.geteuid() != 0:
        return "dockerd is installed but not running, and starting it needs root"
    log = Path(tempfile.gettempdir()) / "dlrm-dockerd.log"
    with log.open("ab") as out:
        subprocess.Popen([dockerd], stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _answers():
            return None
        time.sleep(1)
    return f"dockerd did not answer within 60 s of starting it (log: {log})"


def require_engine() -> None:
    """Skips the calling test without an engine, or fails if DLRM_WITH_DOCKER=1 asked for one."""
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("DLRM_WITH_DOCKER", "").strip() in ("1", "true", "yes"):
        pytest.fail(f"DLRM_WITH_DOCKER=1 but {problem}")
    pytest.skip(problem)


def apt_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources), or Debian's."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        for pattern in (r"^URIs:\s*(\S+)", r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)"):
            for uri in re.findall(pattern, text, flags=re.MULTILINE):
                if re.search(r"/debian/?$", uri):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def debian_base(suite: str) -> str:
    """``dlrm-test-base:<suite>``: Debian minbase made with debootstrap (once per machine)."""
    name = f"dlrm-test-base:{suite}"
    if image_exists(name):
        return name
    if shutil.which("debootstrap") is None:
        pytest.fail(
            f"no registry image and no debootstrap to make {name}: "
            "apt-get install debootstrap (DLRM_WITH_DOCKER=1 bash tools/setup_env.sh does)"
        )
    with tempfile.TemporaryDirectory(prefix=f"dlrm-{suite}-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        made = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), apt_mirror()],
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, f"debootstrap {suite} failed:\n{made.stdout[-3000:]}"
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", name], stdin=tar.stdout, capture_output=True, text=True
        )
        tar.wait()
        assert imported.returncode == 0, imported.stderr
    return name


def default_base() -> str:
    """DOCKERFILE's default base image."""
    match = re.search(r"^ARG FROM_IMAGE_NAME=(\S+)", (ROOT / "DOCKERFILE").read_text(), re.M)
    assert match, "DOCKERFILE has no ARG FROM_IMAGE_NAME=..."
    return match.group(1)


def base_image() -> str:
    """DOCKERFILE's default base when it is here or can be pulled, else a Debian 12 base."""
    name = default_base()
    if image_exists(name):
        return name
    pulled = subprocess.run(["docker", "pull", name], capture_output=True, timeout=600)
    return name if pulled.returncode == 0 else debian_base("bookworm")


def host_ca_bundle() -> str | None:
    """The CA bundle pip trusts here (a TLS-intercepting proxy's CA is in it), if any."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def run_logged(cmd: list[str], log: Path, timeout: float, **kwargs) -> tuple[int, str]:
    """Runs `cmd` with stdin closed, its output into `log`; returns (exit code, output)."""
    with log.open("w") as out:
        try:
            code = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                **kwargs,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    return code, log.read_text(errors="replace")


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])
