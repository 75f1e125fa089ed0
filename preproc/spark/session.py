"""The SparkContext of a run: the master, the executors' Python, the code they import."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the executors import: the preproc package and the dataset contract it writes by.
_SHIPPED = (
    "preproc",
    "models/__init__.py",
    "models/data/__init__.py",
    "models/data/feature_spec.py",
    "models/data/spec_checks.py",
    "models/data/spec_types.py",
)


def pyspark_missing() -> str | None:
    """Why the Spark engine cannot run here, or None when PySpark imports."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "--engine spark needs PySpark: pip install -r requirements-spark.txt (and Java 17+)"
    return None


def default_master(spark_master: str | None, num_workers: int) -> str | None:
    """``--spark_master``, else ``local[num_workers]``; None under ``spark-submit``,
    whose ``--master`` then decides (spark-submit sets PYSPARK_GATEWAY_PORT)."""
    if spark_master:
        return spark_master
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return None
    return f"local[{num_workers}]"


# Seconds to wait for a TCP connection to a standalone master before giving up on it
# (Spark itself retries for 60 s, then fails with no word of the master).
MASTER_CONNECT_TIMEOUT_S = 5.0
_DEFAULT_MASTER_PORT = 7077


def executor_python(configured: str | None) -> str:
    """The interpreter the executors run: ``spark.pyspark.python`` (``configured``), else
    ``PYSPARK_PYTHON``, else the driver's own (``sys.executable``).

    Spark's own default is ``python3`` from each executor's PATH, which need not be the
    interpreter that has the engine's packages (numpy, pandas, PyYAML); the driver's is the
    one known to have them, and on a cluster it works where the workers have the same
    path (one image, a shared file system). Elsewhere the user names the workers' Python.
    """
    return configured or os.environ.get("PYSPARK_PYTHON") or sys.executable


def unreachable_master(master: str, timeout: float = MASTER_CONNECT_TIMEOUT_S) -> str | None:
    """Why no standalone master of ``master`` (``spark://HOST:PORT[,HOST:PORT...]``)
    accepts a TCP connection, or None when one does (or the URL is not a standalone one)."""
    if not master.startswith("spark://"):
        return None
    causes = []
    for address in master[len("spark://") :].split(","):
        host, colon, port = address.rpartition(":")
        if not colon or not port.isdigit():
            host, port = address, str(_DEFAULT_MASTER_PORT)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout).close()
        except OSError as exc:
            causes.append(f"{host}:{port}: {exc.strerror or exc}")
        else:
            return None
    return (
        f"cannot reach the Spark master {master} ({'; '.join(causes)}): check the URL and "
        "that the master runs there (--spark_master, or spark-submit's --master)"
    )


def check_master(master: str | None) -> None:
    """Raises ValueError naming the master when ``master`` (None: spark-submit's) is a
    standalone master that does not answer, before anything is written."""
    if master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        from pyspark import SparkContext

        # spark-submit's JVM runs already and holds the master it was given.
        master = SparkContext.getSystemProperty("spark.master")
    failure = unreachable_master(master or "")
    if failure:
        raise ValueError(failure)


def _code_zip(directory: str) -> str:
    """The Python sources the executors need, zipped for ``SparkContext.addPyFile``."""
    path = os.path.join(directory, "dlrm_preproc.zip")
    with zipfile.ZipFile(path, "w") as archive:
        for item in _SHIPPED:
            source = REPO_ROOT / item
            files = sorted(source.rglob("*.py")) if source.is_dir() else [source]
            for file in files:
                archive.write(file, str(file.relative_to(REPO_ROOT)))
    return path


@contextmanager
def spark_context(master: str | None, settings: dict[str, str] | None = None) -> Iterator:
    """A SparkContext for the run, stopped at the end; an already active one is reused
    (and left running), so tests share one per module.

    Args:
        master: master URL; None keeps spark-submit's.
        settings: extra Spark properties (e.g. ``{"spark.ui.enabled": "false"}``).
    """
    # PySpark warns about pandas 3 on import; the engine uses no pandas API of PySpark.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    from pyspark import SparkConf, SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        yield active
        return
    conf = SparkConf().setAppName("dlrm-preproc").setAll(list((settings or {}).items()))
    conf.setIfMissing("spark.ui.showConsoleProgress", "true")
    if master is not None:
        conf.setMaster(master)
        if master.startswith("local"):
            # The JVM (driver and executors in one) holds cached and fetched blocks.
            conf.setIfMissing("spark.driver.memory", "2g")
    sc = SparkContext(conf=conf)
    try:
        if sc.master.startswith("spark://") and not sc.applicationId.startswith("app-"):
            # No id from a standalone master (its ids are app-...): it accepted TCP but
            # never registered the application (another service's port, a proxy), and
            # Spark gave up after 3 tries of 20 s; the context is being stopped.
            raise ValueError(
                f"the Spark master {sc.master} did not accept the application in 60 s: is it "
                "a standalone master's URL (spark://HOST:PORT, 7077 by default, not its web UI)?"
            )
        # PySpark's tasks run the interpreter named by PYSPARK_PYTHON when the context
        # starts (spark-submit turns spark.pyspark.python into it; python -m preproc has no
        # spark-submit in between): set it from the resolved settings instead.
        sc.pythonExec = executor_python(sc.getConf().get("spark.pyspark.python", None))
        sc.setLogLevel("WARN")
        with tempfile.TemporaryDirectory(prefix="dlrm_preproc_spark_") as tmp:
            sc.addPyFile(_code_zip(tmp))
            yield sc
    finally:
        sc.stop()
