"""Rejected lines: absolute line numbers, the rejects file and ``--on_bad_row fail``."""

from __future__ import annotations

import os

from preproc.count_pass import UnitSummary
from preproc.schema import REASONS
from preproc.units import Unit

REJECTS_FILE = "rejects.tsv"
_HEADER = b"file\tline\treason\tdetail\traw_line\n"


class BadRowError(Exception):
    """Raised under ``--on_bad_row fail``; the message starts with ``file:line``."""


class RejectLog:
    """Numbers the rejects of the units (added in order) and streams them to a TSV file:
    file, line, reason, detail, then the raw line (which may hold tabs).

    Line numbers are 1-based within each input file; a unit's first line
    number is the sum of the line counts of the file's earlier units. The file
    is written as ``<path>.tmp`` and renamed by ``close``.
    """

    def __init__(
        self, path: str, fail: bool, reasons: tuple[str, ...] = REASONS, header: bool = False
    ) -> None:
        """``reasons``: the row format's reject reasons (Criteo's by default);
        ``header``: every input file starts with a header line (not a row: line 2 is
        the first row)."""
        self.path = path
        self.fail = fail
        self.reasons = reasons
        self.first_line = 2 if header else 1
        self.counts = dict.fromkeys(reasons, 0)
        self.lines_read = 0
        self.rows_accepted = 0
        self._next_line: dict[int, int] = {}
        self._file = open(path + ".tmp", "wb")  # noqa: SIM115 (closed by close())
        self._file.write(_HEADER)

    def add(self, unit: Unit, summary: UnitSummary) -> None:
        first = self._next_line.get(unit.file_index, self.first_line)
        self._next_line[unit.file_index] = first + summary.num_lines
        self.lines_read += summary.num_lines
        self.rows_accepted += summary.num_rows
        for line, code, (detail, raw) in zip(
            summary.reject_lines.tolist(),
            summary.reject_codes.tolist(),
            summary.rejects,
            strict=True,
        ):
            reason = self.reasons[code]
            if self.fail:
                raise BadRowError(f"{unit.path}:{first + line}: {reason}: {detail}")
            self.counts[reason] += 1
            detail = detail.replace("\t", " ")
            self._file.write(f"{unit.path}\t{first + line}\t{reason}\t{detail}\t".encode())
            self._file.write(raw + b"\n")

    @property
    def rejected(self) -> int:
        return sum(self.counts.values())

    def close(self, completed: bool) -> None:
        """Renames the file into place when every unit was added, else drops it."""
        self._file.close()
        if completed:
            os.replace(self.path + ".tmp", self.path)
        else:
            os.remove(self.path + ".tmp")
