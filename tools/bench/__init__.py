"""The benchmarks, one entry point: ``python -m tools.bench NAME [args]``.

``python -m tools.bench`` (or ``--help``) lists the names; ``python -m tools.bench
NAME --help`` gives a benchmark's own options. Each benchmark is a module (or a
package) here with ``main(argv) -> int``; the dispatcher imports it only once the
name is known, so a benchmark that never loads TensorFlow (``preproc``) stays light.

Those marked ``huge_pages`` are restarted with glibc's huge-page tunable before
their module is imported, as ``dlrm_main.py`` is (`models.huge_pages`), so that
they measure the default set-up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its module, whether it restarts with huge pages, one line on it."""

    module: str
    huge_pages: bool
    summary: str


BENCHMARKS: dict[str, Benchmark] = {
    "distributed": Benchmark(
        "tools.bench.distributed",
        True,
        "hybrid parallel: the real dlrm_main.py on 1 process and under horovodrun",
    ),
    "input": Benchmark(
        "tools.bench.input", True, "throughput of the input pipelines alone (no model)"
    ),
    "lookup": Benchmark(
        "tools.bench.lookup", True, "embedding lookups and sparse updates, huge pages on and off"
    ),
    "models": Benchmark(
        "tools.bench.models", True, "DLRM and DCNv2 training throughput against the compute bound"
    ),
    "overlap": Benchmark(
        "tools.bench.overlap",
        True,
        "dlrm_main.py with a variant of the dense-gradient allreduce (run by 'distributed')",
    ),
    "preproc": Benchmark(
        "tools.bench.preproc", False, "python -m preproc against the same transform in pandas"
    ),
    "serving": Benchmark(
        "tools.bench.serving",
        True,
        "serving latency of a SavedModel's id and raw-input signatures, fresh process each",
    ),
    "train": Benchmark(
        "tools.bench.train", True, "our DLRM training step against plain Keras and the bound"
    ),
}


def usage() -> str:
    """The text of ``python -m tools.bench --help``: the command and every name."""
    width = max(len(name) for name in BENCHMARKS)
    lines = [
        "usage: python -m tools.bench NAME [args]   (NAME --help: its options)",
        "",
        "benchmarks:",
        *(f"  {name:<{width}}  {b.summary}" for name, b in BENCHMARKS.items()),
    ]
    return "\n".join(lines)


def run(argv: Sequence[str]) -> int:
    """Runs benchmark ``argv[0]`` with the arguments after it; 0 after a help request."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], list(argv[1:])
    if name not in BENCHMARKS:
        print(f"python -m tools.bench: unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    benchmark = BENCHMARKS[name]
    if benchmark.huge_pages:
        from models.huge_pages import restart_with_huge_pages

        restart_with_huge_pages()  # before the module loads TensorFlow
    main = importlib.import_module(benchmark.module).main
    return main(rest) or 0
