"""Rejected lines: absolute line numbers, the rejects file and ``--on_bad_row fail``."""

from __future__ import annotations

from preproc.count_pass import UnitSummary
from preproc.schema import REASONS
from preproc.units import Unit
from preproc.workdir import atomic_open

REJECTS_FILE = "rejects.tsv"


class BadRowError(Exception):
    """Raised under ``--on_bad_row fail``; the message starts with ``file:line``."""


class RejectLog:
    """Collects the rejects of the units in order and numbers their lines.

    Line numbers are 1-based within each input file; a unit's first line
    number is the sum of the line counts of the file's earlier units.
    """

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.counts = dict.fromkeys(REASONS, 0)
        self.lines_read = 0
        self.rows_accepted = 0
        self._next_line: dict[int, int] = {}
        self._entries: list[tuple[str, int, str, str, bytes]] = []

    def add(self, unit: Unit, summary: UnitSummary) -> None:
        """Adds the next unit (units must come in order)."""
        first = self._next_line.get(unit.file_index, 1)
        self._next_line[unit.file_index] = first + summary.num_lines
        self.lines_read += summary.num_lines
        self.rows_accepted += summary.num_rows
        for line, code, (detail, raw) in zip(
            summary.reject_lines.tolist(),
            summary.reject_codes.tolist(),
            summary.rejects,
            strict=True,
        ):
            reason = REASONS[code]
            self.counts[reason] += 1
            entry = (unit.path, first + line, reason, detail, raw)
            if self.fail:
                raise BadRowError(f"{unit.path}:{first + line}: {reason}: {detail}")
            self._entries.append(entry)

    @property
    def rejected(self) -> int:
        return sum(self.counts.values())

    def write(self, path: str) -> None:
        """TSV: file, line, reason, detail, then the raw line (which may hold tabs)."""
        with atomic_open(path) as f:
            f.write(b"file\tline\treason\tdetail\traw_line\n")
            for file, line, reason, detail, raw in self._entries:
                detail = detail.replace("\t", " ")
                f.write(f"{file}\t{line}\t{reason}\t{detail}\t".encode() + raw + b"\n")
