"""Which rank of a Horovod job is gone, told in one line when a collective fails.

When a rank's process dies, the survivors' next collective fails with a Gloo
error naming only a socket address (``Read error [127.0.0.1]:45445:
Connection reset by peer``) deep inside a TensorFlow traceback.
:class:`~models.distributed.comm.HorovodCommunicator` records every rank's
host and process id at start (:func:`record_peers`); :func:`lost_peer_message`
then turns such an error into one line naming the rank whose process is gone
(checked on this host; ranks on other hosts can only be listed as
unverifiable).

Pure Python: no TensorFlow or Horovod import.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

# Texts of the errors a collective raises when a peer is gone or unreachable.
_FAILURE_PATTERNS = (
    re.compile(r"gloo/transport", re.IGNORECASE),
    re.compile(r"Horovod has been shut down"),
    re.compile(r"Connection (reset|closed) by peer"),
)
_GLOO_DETAIL = re.compile(r"\[[^\]\n]*gloo[^\]\n]*\] ([^\n]*)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Peer:
    """One rank of the job: where its process runs."""

    rank: int
    host: str
    pid: int


@dataclasses.dataclass(frozen=True)
class _Job:
    peers: tuple[Peer, ...]
    rank: int


_job: _Job | None = None


def this_process() -> tuple[str, int]:
    """(host name, process id) of this rank, as :func:`record_peers` expects them."""
    return socket.gethostname(), os.getpid()


def record_peers(processes: Sequence[tuple[str, int]], rank: int) -> None:
    """Remembers every rank's (host, pid), indexed by rank, and this process' rank."""
    global _job
    _job = _Job(tuple(Peer(r, str(h), int(p)) for r, (h, p) in enumerate(processes)), rank)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            # The state follows the parenthesised command name, which may hold spaces.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_peer_failure(text: str) -> bool:
    """Whether an error text is that of a collective whose peer is gone or unreachable."""
    return any(pattern.search(text) for pattern in _FAILURE_PATTERNS)


def _detail(text: str) -> str:
    """The Gloo error, else the first line that tells of the failure (never a traceback)."""
    match = _GLOO_DETAIL.search(text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if is_peer_failure(line)]
    return (lines or [text.strip().splitlines()[0] if text.strip() else "no detail"])[0][:300]


def describe_lost_peer(
    text: str,
    peers: Sequence[Peer],
    rank: int,
    alive: Callable[[int], bool] = process_alive,
) -> str:
    """One line: which rank is gone (or which could not be checked) and the Gloo detail."""
    detail = _detail(text)
    host = peers[rank].host
    others = [p for p in peers if p.rank != rank]
    local = [p for p in others if p.host == host]
    remote = [p for p in others if p.host != host]
    gone = [p for p in local if not alive(p.pid)]
    where = f"rank {rank} of {len(peers)}"
    if gone:
        names = ", ".join(f"rank {p.rank} (pid {p.pid} on {p.host})" for p in gone)
        verb = "is" if len(gone) == 1 else "are"
        return f"{where}: {names} {verb} gone; a collective failed ({detail}); the job stops"
    if remote:
        among = ", ".join(f"rank {p.rank} on {p.host}" for p in remote)
        return (
            f"{where}: a collective failed ({detail}); every rank on this host still runs, "
            f"so the lost rank is among: {among}"
        )
    return (
        f"{where}: a collective failed ({detail}) although every rank's process still runs "
        "(a frozen rank?)"
    )


def lost_peer_message(error: BaseException) -> str | None:
    """The one-line message for a collective that failed on a lost rank, else None.

    None also when no Horovod job was recorded (a single process).
    """
    text = getattr(error, "message", None) or str(error)
    if _job is None or not is_peer_failure(text):
        return None
    return describe_lost_peer(text, _job.peers, _job.rank)
