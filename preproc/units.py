"""Units of work and the readers that turn a unit into blocks of complete lines.

A unit is a byte range of a plain file whose ends sit just after a newline, or
a whole ``.gz`` file. Units are planned from the files alone (never from the
worker count), so their order, the line numbering and every seed derived from
a unit index are the same for any ``--num_workers``.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

# Bytes parsed at once inside a unit: bounds a worker's memory, and small enough that
# the parse's passes over a block stay mostly in cache (4 MiB: ~8% less CPU than 8 MiB).
BLOCK_BYTES = 4 << 20
_SCAN_BYTES = 1 << 16
_GZIP_READ_BYTES = 1 << 20
# Editors on Windows start UTF-8 files with it; it is not part of the first field.
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Unit:
    """Lines of ``path`` starting in [start, end); ``end`` is the file size for ``.gz``."""

    index: int
    file_index: int
    path: str
    start: int
    end: int
    compressed: bool


def is_gzip(path: str) -> bool:
    return path.endswith(".gz")


def _next_line_start(f, position: int, size: int) -> int:
    """Offset just after the first newline at or after ``position - 1``."""
    if position <= 0:
        return 0
    f.seek(position - 1)
    offset = position - 1
    while offset < size:
        chunk = f.read(_SCAN_BYTES)
        found = chunk.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(chunk)
    return size


def plan_units(paths: list[str], unit_bytes: int) -> list[Unit]:
    """Splits plain files into newline-aligned ranges of about ``unit_bytes``."""
    if unit_bytes <= 0:
        raise ValueError(f"unit_bytes must be positive, got {unit_bytes}")
    units: list[Unit] = []
    for file_index, path in enumerate(paths):
        size = os.path.getsize(path)
        if size == 0:
            continue
        if is_gzip(path):
            units.append(Unit(len(units), file_index, path, 0, size, True))
            continue
        with open(path, "rb") as f:
            bounds = sorted({_next_line_start(f, b, size) for b in range(0, size, unit_bytes)})
        bounds.append(size)
        for start, end in itertools.pairwise(bounds):
            if end > start:
                units.append(Unit(len(units), file_index, path, start, end, False))
    return units


class GzipStreamError(Exception):
    """A ``.gz`` input ended early or holds corrupt data."""


def _gunzip(path: str) -> Iterator[bytes]:
    """Decompressed bytes of a (possibly multi-member) gzip file.

    Uses zlib directly rather than ``gzip.GzipFile`` so that every byte that
    could be decompressed before a truncation or corruption is delivered.
    """
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    started = False
    with open(path, "rb") as f:
        while True:
            compressed = f.read(_GZIP_READ_BYTES)
            if not compressed:
                break
            while compressed:
                started = True
                try:
                    yield decompressor.decompress(compressed)
                except zlib.error as exc:
                    raise GzipStreamError(f"corrupt gzip data: {exc}") from exc
                if not decompressor.eof:
                    break
                compressed = decompressor.unused_data
                decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
                started = False
    if started and not decompressor.eof:
        raise GzipStreamError("gzip stream ends before its end-of-stream marker (truncated file)")


def _plain(unit: Unit) -> Iterator[bytes]:
    with open(unit.path, "rb") as f:
        f.seek(unit.start)
        remaining = unit.end - unit.start
        while remaining > 0:
            data = f.read(min(BLOCK_BYTES, remaining))
            if not data:
                raise OSError(f"{unit.path} shrank while being read (at byte {f.tell()})")
            remaining -= len(data)
            yield data


class UnitReader:
    """Iterates over blocks of complete lines of a unit.

    After iteration, ``error`` holds ``(message, trailing_bytes)`` when a gzip
    stream was truncated or corrupt: the complete lines before the damage were
    delivered, the incomplete tail is returned for the rejects file.
    """

    def __init__(self, unit: Unit, block_bytes: int = BLOCK_BYTES) -> None:
        self.unit = unit
        self.block_bytes = block_bytes
        self.error: tuple[str, bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        pending = bytearray()
        source = _gunzip(self.unit.path) if self.unit.compressed else _plain(self.unit)
        at_file_start = self.unit.start == 0
        try:
            for data in source:
                pending += data
                if at_file_start and len(pending) >= len(UTF8_BOM):
                    if pending.startswith(UTF8_BOM):
                        del pending[: len(UTF8_BOM)]
                    at_file_start = False
                if len(pending) >= self.block_bytes:
                    cut = pending.rfind(b"\n") + 1
                    if cut > 0:
                        yield bytes(pending[:cut])
                        del pending[:cut]
        except GzipStreamError as exc:
            cut = pending.rfind(b"\n") + 1
            if cut > 0:
                yield bytes(pending[:cut])
            self.error = (str(exc), bytes(pending[cut:]))
            return
        if pending:
            yield bytes(pending)


def first_line(path: str) -> bytes:
    """The first line of a file (decompressed for ``.gz``), without the newline."""
    if is_gzip(path):
        data = b""
        try:
            for chunk in _gunzip(path):
                data += chunk
                if b"\n" in data or len(data) > _SCAN_BYTES:
                    break
        except GzipStreamError:
            pass
    else:
        with open(path, "rb") as f:
            data = f.read(_SCAN_BYTES)
    return data.removeprefix(UTF8_BOM).split(b"\n", 1)[0].rstrip(b"\r")
