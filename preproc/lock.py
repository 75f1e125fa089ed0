"""One preprocessing run per output directory, enforced by an exclusive file lock.

The lock is ``flock`` on ``<output_dir>/.preproc.lock``; the kernel drops it
when its holder dies (even by ``kill -9``), so a stale file never blocks a
rerun. The holder writes its pid, host and start time into the file, so a
second run can say who holds the directory. Creating the file is also the
first write into the output directory: a read-only or missing-permission
output fails here, before any work.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket

LOCK_FILE = ".preproc.lock"


class OutputLockedError(Exception):
    """Another run holds the output directory."""


class OutputDirLock:
    """Context manager holding the lock of ``output_dir`` (created if missing)."""

    def __init__(self, output_dir: str) -> None:
        self.path = os.path.join(output_dir, LOCK_FILE)
        self.output_dir = output_dir
        self.fd: int | None = None

    def __enter__(self) -> OutputDirLock:
        os.makedirs(self.output_dir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise OutputLockedError(
                    f"{self.output_dir} is being written by another preprocessing run "
                    f"({self._holder()}); wait for it to finish or choose another --output_dir"
                ) from None
            # The previous holder may have removed the file between our open and our
            # lock: then we locked an orphan inode, and must lock the file anew.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode())
        self.fd = fd
        return self

    def _holder(self) -> str:
        try:
            with open(self.path) as f:
                holder = f.read().strip()
        except OSError:
            holder = ""
        return holder or "holder unknown"

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            # Unlink before unlocking: a run that opened this inode meanwhile sees it is
            # no longer the file at the path and starts over (above).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = None
