"""The stock-distribution tier: the README's two commands in fresh Debian containers.

Each container starts from Debian minbase (tests/environments/engine.py), gets only the
packages the README's install line names, a copy of this checkout (its tracked and
unignored files, as a clone has them) and the host's CA bundle for pip, then runs the
README's two commands as written. Slow (a Horovod build and the whole suite inside): it runs
only when asked, ``DLRM_WITH_DISTROS=1`` (every suite) or a comma list such as ``bookworm``
(.ci/run asks for Debian 12).
"""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.environments.engine import (
    ROOT,
    debian_base,
    host_ca_bundle,
    require_engine,
    run_logged,
    tail,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SUITES = {"bookworm": "Debian 12", "trixie": "Debian 13"}


def requested() -> set[str]:
    value = os.environ.get("DLRM_WITH_DISTROS", "").strip().lower()
    if value in ("", "0", "no", "false"):
        return set()
    if value in ("1", "yes", "true", "all"):
        return set(SUITES)
    suites = {s.strip() for s in value.split(",") if s.strip()}
    unknown = suites - set(SUITES)
    if unknown:
        raise ValueError(f"DLRM_WITH_DISTROS: unknown suite(s) {sorted(unknown)}; use {SUITES}")
    return suites


def readme_commands() -> tuple[str, list[str]]:
    """The README's package install line and its two commands, as a user copies them."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [line.strip() for line in blocks[0].splitlines() if line.strip()]
    install = next(
        (line.strip() for line in text.splitlines() if line.strip().startswith("apt-get install")),
        None,
    )
    assert install, "the README names no 'apt-get install ...' line for a stock distribution"
    return install, commands


def checkout_tar(path: Path) -> None:
    """This checkout as a clone has it: tracked and new unignored files (uncommitted edits in)."""
    names = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    with tarfile.open(path, "w") as tar:
        for name in filter(None, names):
            if (ROOT / name).exists():
                tar.add(ROOT / name, arcname=f"dlrm/{name}", recursive=False)


def test_readme_commands_are_what_this_tier_runs() -> None:
    install, commands = readme_commands()
    assert commands == ["bash tools/quickstart.sh", "bash tools/run_tests.sh"]
    assert install.split()[:3] == ["apt-get", "install", "-y"]
    assert {"python3", "python3-venv", "python3-dev", "g++", "make"} <= set(install.split())


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_readme_commands_in_a_fresh_container(suite: str, tmp_path: Path) -> None:
    if suite not in requested():
        pytest.skip(f"{SUITES[suite]} tier not requested (DLRM_WITH_DISTROS=1 or ={suite})")
    require_engine()
    install, commands = readme_commands()
    checkout_tar(tmp_path / "checkout.tar")
    script = " && ".join(
        [
            "apt-get update -q",
            f"DEBIAN_FRONTEND=noninteractive {install} -q",
            "mkdir -p /root/work",
            "tar -C /root/work -xf /src/checkout.tar",
            "cd /root/work/dlrm",
            "python3 --version",
            *commands,
        ]
    )
    mounts = ["-v", f"{tmp_path}:/src:ro"]
    ca = host_ca_bundle()
    if ca:  # pip behind a TLS-intercepting proxy trusts what the host trusts
        mounts += ["-v", f"{ca}:/host-ca.crt:ro", "-e", "PIP_CERT=/host-ca.crt"]
    name = f"dlrm_tf2_distro_{suite}_{os.getpid()}"
    cmd = ["docker", "run", "--rm", "--name", name, "--network=host", "--shm-size=2g", *mounts]
    try:
        code, out = run_logged(
            [*cmd, debian_base(suite), "bash", "-c", script], tmp_path / "run.log", 3500
        )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    print(f"{SUITES[suite]}: {tail(out, 3)}")
    assert code == 0, f"README commands failed in {SUITES[suite]} ({code}):\n{tail(out, 80)}"
    assert re.search(r"^\s*auc = 0\.\d+", out, re.M), "the quick start printed no AUC"
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, summary
