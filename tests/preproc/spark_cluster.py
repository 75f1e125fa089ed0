"""A real standalone Spark cluster on 127.0.0.1 for tests: one master and N workers.

The daemons are PySpark's own (``bin/spark-class`` with the Master and Worker classes,
SPARK_HOME being the pyspark package); each runs in its own process group so that
``stop`` ends the launcher script, the JVM and the executors it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


# The tests' JVMs live seconds: C1 compilation only and one GC thread halve their CPU
# time on 2 cores (a 20,000-row run on the cluster: 51 s -> 28 s of CPU) without
# changing what they compute.
SHORT_LIVED_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def loopback_env(conf_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of the daemons and of a driver: Spark binds to 127.0.0.1 and reads
    its configuration from ``conf_dir`` (written here: JVM options for short runs, nothing
    else); the executors' Python comes from the driver, not from this environment."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "spark-defaults.conf").write_text(
        f"spark.driver.extraJavaOptions {SHORT_LIVED_JVM}\n"
        f"spark.executor.extraJavaOptions {SHORT_LIVED_JVM}\n"
    )
    unset = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_CONF_DIR=str(conf_dir),
        SPARK_LOCAL_IP=HOST,
        SPARK_LAUNCHER_OPTS=SHORT_LIVED_JVM,  # spark-class's launcher JVM
        **extra,
    )
    return env


@dataclass
class Cluster:
    master_url: str
    web_url: str
    logs: Path
    processes: list[subprocess.Popen]

    def state(self) -> dict:
        """The master's JSON status page (workers, applications)."""
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no http_proxy
        with direct.open(f"{self.web_url}/json/", timeout=5) as response:
            return json.load(response)

    def log_tails(self, lines: int = 20) -> str:
        tails = []
        for log in sorted(self.logs.glob("*.log")):
            tails.append(f"== {log.name}\n" + "\n".join(log.read_text().splitlines()[-lines:]))
        return "\n".join(tails)


def _daemon(env: dict, log: Path, main_class: str, *args: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), main_class, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_workers(cluster: Cluster, workers: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in cluster.processes:
            if _exited(process):
                raise RuntimeError(f"a Spark daemon exited early\n{cluster.log_tails()}")
        try:
            if cluster.state().get("aliveworkers", 0) >= workers:
                return
        except OSError:
            pass  # the master's web UI is not up yet
        time.sleep(0.5)
    raise RuntimeError(f"{workers} workers not registered in {timeout_s} s\n{cluster.log_tails()}")


def _exited(process: subprocess.Popen) -> bool:
    """Whether the process ended, without reaping it: an unreaped leader (a zombie at
    worst) keeps its process group id ours, so killpg cannot hit a stranger's group."""
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    return os.waitid(os.P_PID, process.pid, flags) is not None


def stop(processes: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM to each daemon's process group, SIGKILL after grace_s to what is left
    (executor JVMs a worker started are in its group), then reaps the daemons."""
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not all(_exited(p) for p in processes):
        time.sleep(0.2)
    for process in processes:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def standalone_cluster(
    root: Path, workers: int = 2, cores: int = 1, memory: str = "1g", timeout_s: float = 180
) -> Iterator[Cluster]:
    """A master and ``workers`` workers of ``cores`` cores and ``memory`` each, registered
    when it yields, all stopped on exit (also when the body fails).

    ``memory`` must hold one executor (``spark.executor.memory``, 1g by default).
    """
    logs = root / "logs"
    logs.mkdir(parents=True)
    env = loopback_env(
        root / "conf", SPARK_DAEMON_MEMORY="256m", SPARK_DAEMON_JAVA_OPTS=SHORT_LIVED_JVM
    )
    port, web_port = free_port(), free_port()
    cluster = Cluster(f"spark://{HOST}:{port}", f"http://{HOST}:{web_port}", logs, [])
    try:
        cluster.processes.append(
            _daemon(
                env,
                logs / "master.log",
                "org.apache.spark.deploy.master.Master",
                *("--host", HOST, "--port", str(port), "--webui-port", str(web_port)),
            )
        )
        for index in range(workers):
            work_dir = root / f"worker{index}"
            work_dir.mkdir()
            cluster.processes.append(
                _daemon(
                    env,
                    logs / f"worker{index}.log",
                    "org.apache.spark.deploy.worker.Worker",
                    *("--host", HOST, "--webui-port", "0", "--cores", str(cores)),
                    *("--memory", memory, "--work-dir", str(work_dir), cluster.master_url),
                )
            )
        _wait_for_workers(cluster, workers, timeout_s)
        yield cluster
    finally:
        stop(cluster.processes)
