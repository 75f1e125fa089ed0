"""The one-line message for a collective that failed because a rank is gone (no Horovod)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.distributed import peers
from models.distributed.peers import Peer, describe_lost_peer, is_peer_failure

GLOO_RESET = (
    "Graph execution error:\n\nDetected at node hybrid_embeddings defined at ...\n"
    "[/tmp/build/horovod-0.28.1/third_party/compatible17_gloo/gloo/transport/tcp/pair.cc:589] "
    "Read error [127.0.0.1]:45445: Connection reset by peer\n\t [[{{node hybrid_embeddings}}]]"
)
SHUT_DOWN = (
    "Graph execution error:\n\nDetected at node ...\nHorovod has been shut down. This was "
    "caused by an exception on one of the ranks or an attempt to allreduce.\n\t [[{{node x}}]]"
)


def _dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_failure_texts_are_recognised() -> None:
    assert is_peer_failure(GLOO_RESET) and is_peer_failure(SHUT_DOWN)
    assert not is_peer_failure("Graph execution error: indices[3] = 9 is not in [0, 5)")


def test_the_dead_rank_on_this_host_is_named() -> None:
    import os

    job = [Peer(0, "vm", os.getpid()), Peer(1, "vm", _dead_pid()), Peer(2, "vm", os.getppid())]
    message = describe_lost_peer(GLOO_RESET, job, rank=0)
    assert message == (
        f"rank 0 of 3: rank 1 (pid {job[1].pid} on vm) is gone; a collective failed "
        "(Read error [127.0.0.1]:45445: Connection reset by peer); the job stops"
    )
    assert "\n" not in describe_lost_peer(SHUT_DOWN, job, rank=2)
    assert "(Horovod has been shut down. This was caused" in describe_lost_peer(SHUT_DOWN, job, 2)


def test_ranks_on_other_hosts_are_listed_when_none_here_is_gone() -> None:
    job = [Peer(0, "a", 10), Peer(1, "a", 11), Peer(2, "b", 12), Peer(3, "b", 13)]
    message = describe_lost_peer(GLOO_RESET, job, rank=1, alive=lambda pid: True)
    assert message.endswith(
        "every rank on this host still runs, so the lost rank is among: rank 2 on b, rank 3 on b"
    )
    alone = describe_lost_peer(GLOO_RESET, job[:2], rank=0, alive=lambda pid: True)
    assert alone.endswith("although every rank's process still runs (a frozen rank?)")


def test_process_alive_sees_this_process_and_not_a_dead_one() -> None:
    import os

    assert peers.process_alive(os.getpid())
    assert not peers.process_alive(_dead_pid())


def test_no_message_without_a_recorded_job_or_for_other_errors(monkeypatch) -> None:
    monkeypatch.setattr(peers, "_job", None)
    assert peers.lost_peer_message(RuntimeError(GLOO_RESET)) is None
    peers.record_peers([("vm", 1), ("vm", _dead_pid())], rank=0)
    assert peers.lost_peer_message(RuntimeError("some other failure")) is None
    assert "rank 1 (pid" in peers.lost_peer_message(RuntimeError(GLOO_RESET))


@pytest.mark.parametrize("text", [GLOO_RESET, SHUT_DOWN])
def test_the_message_is_one_line(text) -> None:
    job = [Peer(0, "vm", 1), Peer(1, "vm", 2)]
    assert "\n" not in describe_lost_peer(text, job, 0, alive=lambda pid: pid == 1)
