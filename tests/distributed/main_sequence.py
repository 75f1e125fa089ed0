"""Runs ``dlrm_main.main`` several times in one process per rank, under ``horovodrun``.

    horovodrun -np 2 --gloo python -m tests.distributed.main_sequence RUNS.json

``RUNS.json`` holds a list of argument lists (program name excluded); they run
in order on every rank. One ``horovodrun`` start-up (about 10 s on two cores)
then serves several training runs, which keeps the cross-world-size tests short.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dlrm_main


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: {argv[0]} RUNS.json (a JSON list of argument lists)")
    runs = json.loads(Path(argv[1]).read_text())
    if not isinstance(runs, list) or not all(isinstance(r, list) for r in runs):
        raise SystemExit(f"{argv[1]}: expected a JSON list of argument lists, got {runs!r}")
    for args in runs:
        dlrm_main.main(["dlrm_main.py", *args])


if __name__ == "__main__":
    main(sys.argv)
