"""What identifies an input file's contents: size, modification time, content hash.

A dataset records these for every input; a rerun into the same output
directory compares them, so a file edited in place (even to the same size) is
never mistaken for the one the dataset was made from.
"""

from __future__ import annotations

import hashlib
import os

# Files up to this size are hashed whole; larger ones by their first, middle
# and last blocks (a Criteo day is ~50 GB: hashing it whole would cost minutes).
WHOLE_FILE_BYTES = 16 << 20
SAMPLE_BYTES = 1 << 20


def content_fingerprint(path: str) -> str:
    """``sha256:<hex>`` of the whole file, or of its size and three sampled blocks."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            while chunk := f.read(SAMPLE_BYTES):
                digest.update(chunk)
        else:
            digest.update(size.to_bytes(8, "little"))
            for offset in (0, (size - SAMPLE_BYTES) // 2, size - SAMPLE_BYTES):
                f.seek(offset)
                digest.update(f.read(SAMPLE_BYTES))
    return "sha256:" + digest.hexdigest()


def identity(path: str) -> dict:
    """``{"bytes", "mtime_ns", "fingerprint"}`` of one input file."""
    stat = os.stat(path)
    return {
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "fingerprint": content_fingerprint(path),
    }


def changed_inputs(recorded: list[dict], paths: tuple[str, ...] | list[str]) -> list[str]:
    """How the inputs differ from those ``recorded`` in a dataset, one phrase each.

    Only the keys a record holds are compared, so a dataset written before
    modification times and fingerprints were recorded is checked on size.
    """
    if [r.get("path") for r in recorded] != list(paths):
        return ["the list of input files"]
    problems = []
    for record, path in zip(recorded, paths, strict=True):
        now = identity(path)
        what = [
            {"bytes": "size", "mtime_ns": "modification time", "fingerprint": "contents"}[key]
            for key in ("bytes", "mtime_ns", "fingerprint")
            if key in record and record[key] != now[key]
        ]
        if what:
            problems.append(f"{path} ({', '.join(what)} changed)")
    return problems
