"""The Docker tier: DOCKERFILE built, then run through run_docker.sh with DEVICE=cpu.

Marked ``docker``; skipped with the reason when no engine can be used (tests/environments/
engine.py), failed instead when DLRM_WITH_DOCKER=1 asks for the tier (as .ci/run does). The
image is built once per session by tools/docker_build.sh, from DOCKERFILE's base when it is
here or can be pulled, else from a Debian 12 base made with debootstrap.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.environments.engine import (
    ROOT,
    base_image,
    host_ca_bundle,
    require_engine,
    run_logged,
    tail,
)

# The first test also builds the image (a Horovod build when no wheel is cached).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3600)]

IMAGE_NAME, IMAGE_TAG = "dlrm_tf2_test", "tier"
IMAGE = f"{IMAGE_NAME}:{IMAGE_TAG}"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_engine()
    env = dict(os.environ, IMAGE_NAME=IMAGE_NAME, IMAGE_TAG=IMAGE_TAG, FROM_IMAGE_NAME=base_image())
    ca = host_ca_bundle()
    if ca:
        env["CA_BUNDLE"] = ca
    log = tmp_path_factory.mktemp("image") / "build.log"
    start = time.monotonic()
    code, out = run_logged(["bash", "tools/docker_build.sh"], log, 3600, cwd=ROOT, env=env)
    assert code == 0, f"tools/docker_build.sh failed ({code}):\n{tail(out)}"
    print(f"image {IMAGE} from {env['FROM_IMAGE_NAME']}: built in {time.monotonic() - start:.0f} s")
    return IMAGE


@pytest.fixture
def site(tmp_path: Path) -> dict[str, str]:
    """run_docker.sh's environment: a CPU container of the test image, env.sh paths in tmp."""
    paths = {name: tmp_path / name.lower() for name in ("RAW_DATA_DIR", "DATA_DIR", "MODEL_DIR")}
    for path in paths.values():
        path.mkdir()
    name = f"dlrm_tf2_test_{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        DEVICE="cpu",
        IMAGE_NAME=IMAGE_NAME,
        IMAGE_TAG=IMAGE_TAG,
        CONTAINER_NAME=name,
        SHM_SIZE="2g",
        **{k: str(v) for k, v in paths.items()},
    )
    yield env
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def run_docker(site: dict[str, str], log: Path, *command: str, timeout: float = 900) -> str:
    """``bash run_docker.sh COMMAND`` without a terminal (stdin closed, output to a file)."""
    code, out = run_logged(["bash", "run_docker.sh", *command], log, timeout, cwd=ROOT, env=site)
    assert code == 0, f"run_docker.sh {' '.join(command)} failed ({code}):\n{tail(out)}"
    return out


def test_the_image_sets_itself_up_offline_and_keeps_no_build_settings(image: str) -> None:
    # The image's own environment is the project's: the set-up finds everything, with no
    # variable set and no network, and changes nothing.
    setup = subprocess.run(
        ["docker", "run", "--rm", "--network=none", image, "bash", "tools/setup_env.sh"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "[setup] ready: /opt/dlrm/venv/bin/python" in setup.stdout
    assert "building from source" not in setup.stdout
    # Proxy, index and CA settings of the build stay in the build stage.
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for needle in ("PIP_CERT", "PIP_INDEX_URL", "dlrm-certs", "CA_CERTS_DIR", "_proxy"):
        assert needle not in history, f"image history names {needle}"
    inside = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network=none",
            image,
            "bash",
            "-c",
            "env; ls /tmp /workspace/dlrm/docker/certs /workspace/dlrm/docker/cache 2>&1; "
            "ls /root/.config/pip /etc/pip.conf 2>&1; true",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not re.search(r"^(PIP_\w+|https?_proxy|HTTPS?_PROXY)=", inside, re.M), inside
    assert "dlrm-certs" not in inside and "build-ca-bundle" not in inside
    assert "No such file or directory" in inside  # docker/certs, docker/cache, pip configs


def test_quickstart_in_the_container(image: str, site: dict[str, str], tmp_path: Path) -> None:
    out = run_docker(
        site,
        tmp_path / "quickstart.log",
        "bash",
        "-c",
        'QUICKSTART_DIR="$MODEL_DIR/quickstart" QUICKSTART_ROWS=200000 bash tools/quickstart.sh',
    )
    assert "horovodrun -np 2" in out
    auc = re.findall(r"^\s*auc = (0\.\d+)", out, re.M)
    assert auc and float(auc[-1]) > 0.7, tail(out)
    plots = list(Path(site["MODEL_DIR"]).glob("quickstart/run_*/train_log.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 10_000
    # A second call attaches to the same container (docker exec), still without a terminal.
    again = run_docker(site, tmp_path / "again.log", "ls", f"{site['MODEL_DIR']}/quickstart")
    assert "dataset" in again.split()


def test_horovodrun_two_ranks_in_the_container(
    image: str, site: dict[str, str], tmp_path: Path
) -> None:
    out = run_docker(
        site,
        tmp_path / "hvd.log",
        "horovodrun",
        "-np",
        "2",
        "--gloo",
        "python",
        "dlrm_main.py",
        "--dataset_type=synthetic",
        "--synthetic_dataset_cardinalities=" + ",".join(["50"] * 26),
        "--synthetic_dataset_train_batches=8",
        "--synthetic_dataset_valid_batches=2",
        "--batch_size=256",
        "--valid_batch_size=256",
        "--embedding_dim=8",
        "--bottom_mlp_dims=16,8",
        "--top_mlp_dims=16,1",
        "--use_horovod",
        "--device=cpu",
        "--inter_op_parallelism=1",
        "--intra_op_parallelism=1",
        "--print_freq=4",
        f"--log_path={site['MODEL_DIR']}/hvd_log.json",
    )
    log = (Path(site["MODEL_DIR"]) / "hvd_log.json").read_text()
    assert '"world_size": 2' in log, tail(out)
    assert re.search(r'"auc": 0\.\d+', log), tail(out)


def test_env_sh_paths_are_mounted_at_the_same_paths(
    image: str, site: dict[str, str], tmp_path: Path
) -> None:
    raw, data, model = (Path(site[k]) for k in ("RAW_DATA_DIR", "DATA_DIR", "MODEL_DIR"))
    (raw / "day_0").write_text("written on the host\n")
    out = run_docker(
        site,
        tmp_path / "paths.log",
        "bash",
        "-c",
        'source env.sh && cat "$RAW_DATA_DIR/day_0" && echo "dataset=$DATASET_PATH" '
        '&& echo "python=$PYTHON" && touch "$DATA_DIR/from_container" "$MODEL_DIR/from_container"',
    )
    assert "written on the host" in out
    assert f"dataset={data}/criteo_thr15" in out
    assert "python=/opt/dlrm/venv/bin/python" in out
    assert (data / "from_container").exists() and (model / "from_container").exists()
