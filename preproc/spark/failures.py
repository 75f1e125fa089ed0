"""A failed Spark job as one line: the error an executor died of, not the JVM's trace."""

from __future__ import annotations

import re

_PYTHON_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.+)$")


def spark_failure(exc: BaseException) -> str | None:
    """The Python error an executor task died of, from a Spark job failure, as one line;
    None when ``exc`` is not a Spark failure."""
    if not type(exc).__module__.startswith(("py4j", "pyspark")):
        return None
    for line in str(exc).splitlines():
        match = _PYTHON_ERROR.match(line.strip())
        if match and not match.group(1).startswith(("org.", "java.", "py4j.", "scala.")):
            return line.strip()
    first = str(exc).strip().splitlines()
    return first[0] if first else type(exc).__name__
