"""A failed Spark job as one line: the error an executor died of, not the JVM's trace."""

from __future__ import annotations

import re
import sys

_PYTHON_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.+)$")
_NO_MODULE = re.compile(r"^ModuleNotFoundError: No module named '([\w.]+)'")
_CANNOT_RUN = re.compile(r'Cannot run program "([^"]*)": (?:error=\d+, )?([^\n]+)')
# Packages the engine ships to the executors itself (session._SHIPPED): a missing one is
# not the interpreter's fault.
_SHIPPED = ("preproc", "models")
_SET_PYTHON = (
    "set spark.pyspark.python (spark-submit --conf spark.pyspark.python=PATH) "
    "or PYSPARK_PYTHON=PATH"
)


def _python(path: str) -> str:
    default = " (the driver's, their default)" if path == sys.executable else ""
    return f"{path}{default}"


def spark_failure(exc: BaseException, python: str | None = None) -> str | None:
    """The Python error an executor task died of, from a Spark job failure, as one line;
    None when ``exc`` is not a Spark failure.

    Args:
        exc: what the driver caught.
        python: the executors' interpreter; a module it lacks, or a path that does not
            run, gets the line naming the setting that chooses another.
    """
    if not type(exc).__module__.startswith(("py4j", "pyspark")):
        return None
    text = str(exc)
    cannot_run = _CANNOT_RUN.search(text)
    if cannot_run:
        program, cause = cannot_run.groups()
        return (
            f"executors cannot start Python {_python(program)}: {cause.strip()}; "
            f"{_SET_PYTHON} to a Python that exists at that path on every worker"
        )
    for line in text.splitlines():
        line = line.strip()
        match = _PYTHON_ERROR.match(line)
        if match and not match.group(1).startswith(("org.", "java.", "py4j.", "scala.")):
            missing = _NO_MODULE.match(line)
            if missing and python and missing.group(1).split(".")[0] not in _SHIPPED:
                return (
                    f"{line} on the executors, which run {_python(python)}; {_SET_PYTHON} "
                    "to a Python with numpy, pandas and PyYAML on every worker"
                )
            return line
    first = text.strip().splitlines()
    return first[0] if first else type(exc).__name__
