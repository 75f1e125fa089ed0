"""Collective communication for hybrid-parallel training.

Two implementations of one protocol: :class:`LocalCommunicator` for a single
process (identity collectives, Horovod never imported) and
:class:`HorovodCommunicator`. This module is the only place that imports
Horovod, and it does so lazily, inside :class:`HorovodCommunicator`.

Ordering. Horovod matches collectives across ranks by name. Inside a
``tf.function`` TensorFlow may run independent ops in any order, and the
reference TF2 DLRM documents a hang when TensorFlow issued its all-to-alls in
different orders on different ranks. Every collective of :class:`HorovodCommunicator` therefore
gets a fixed name and, in graph mode, a control dependency on the previous
collective issued in the same graph: the collectives run in program order,
which is the same on every rank because every rank traces the same code. The
backward all-to-all is part of that chain (it is issued by our own gradient
function, not Horovod's).

Failure of a rank (measured with ``horovodrun --gloo`` on this machine, see
``tests/distributed/test_horovod.py``):

- a rank's process dies (crash, OOM kill, ``kill -9``): its TCP connections
  are reset and the survivors' next collective fails at once with a Horovod
  error (measured: well under 1 s); ``horovodrun`` also terminates the other
  ranks as soon as one exits with a non-zero status (whole job ended 0.5 s
  after the kill); ``dlrm_main.py`` then prints one line naming the rank
  whose process is gone (``peers.py``) instead of the collective's traceback;
- a rank stops answering without closing its sockets (frozen process, lost
  host): the survivors' collective fails after the Gloo timeout,
  ``timeout_seconds`` (default 60 s; measured 5.0 s with 5), and
  ``horovodrun`` ends the job about 15 s later.

Not bounded by Gloo: a rank that stays alive and keeps its Horovod thread
running but never issues its next collective (e.g. stuck in its input
pipeline) leaves the others waiting; Horovod 0.28.1's stall inspector did not
shut such a job down in our tests. The training loop's step watchdog
(``watchdog.py``, ``--step_timeout_s``) ends such a job about
``--step_timeout_s`` after the last completed step (measured in
``tests/distributed/test_watchdog.py``: 10 s timeout, job ended 10.2 s
after a rank stopped).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import tensorflow as tf

from models.distributed import peers


@runtime_checkable
class Communicator(Protocol):
    """Collectives used by :class:`models.distributed.hybrid.HybridParallel`."""

    rank: int
    size: int
    local_rank: int

    def alltoall(self, tensor: tf.Tensor, splits: tf.Tensor, name: str) -> tf.Tensor:
        """Sends ``tensor[sum(splits[:r]) : sum(splits[:r+1])]`` to rank r along axis 0.

        Returns the pieces received from ranks 0..size-1, concatenated along
        axis 0. Differentiable: the gradient runs the reverse all-to-all.
        """
        ...

    def alltoall_with_splits(
        self, tensor: tf.Tensor, splits: tf.Tensor, name: str
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Like :meth:`alltoall`, not differentiable, also returning what came from where.

        Returns ``(received, received_splits)``: ``received_splits[r]`` rows
        came from rank r (for ids, whose answers go back with these splits).
        """
        ...

    def grouped_allreduce(
        self, tensors: Sequence[tf.Tensor], average: bool, name: str
    ) -> list[tf.Tensor]:
        """Sums (or averages) each tensor over ranks, as one collective."""
        ...

    def allgather(self, tensor: tf.Tensor, name: str) -> tf.Tensor:
        """Concatenates every rank's ``tensor`` along axis 0, in rank order."""
        ...

    def broadcast_variables(self, variables: Sequence[Any], root_rank: int = 0) -> None:
        """Overwrites ``variables`` with their values on ``root_rank``."""
        ...

    def barrier(self) -> None:
        """Returns when every rank has called it."""
        ...

    def record_peers(self) -> None:
        """Records every rank's host and process id (see models/distributed/peers.py).

        Runs a collective, so it is called after the device is set up: TensorFlow's
        thread pools and device list are fixed by the first op a process runs.
        """
        ...


class LocalCommunicator:
    """World size 1: every collective is the identity; Horovod is not imported."""

    rank = 0
    size = 1
    local_rank = 0

    def alltoall(self, tensor: tf.Tensor, splits: tf.Tensor, name: str) -> tf.Tensor:
        del splits, name  # everything stays on this rank
        return tf.identity(tensor)

    def alltoall_with_splits(
        self, tensor: tf.Tensor, splits: tf.Tensor, name: str
    ) -> tuple[tf.Tensor, tf.Tensor]:
        del name
        return tf.identity(tensor), tf.cast(splits, tf.int32)

    def grouped_allreduce(
        self, tensors: Sequence[tf.Tensor], average: bool, name: str
    ) -> list[tf.Tensor]:
        del average, name
        return [tf.identity(t) for t in tensors]

    def allgather(self, tensor: tf.Tensor, name: str) -> tf.Tensor:
        del name
        return tf.identity(tensor)

    def broadcast_variables(self, variables: Sequence[Any], root_rank: int = 0) -> None:
        if root_rank != 0:
            raise ValueError(f"root_rank must be 0 with one process, got {root_rank}")

    def barrier(self) -> None:
        return None

    def record_peers(self) -> None:
        return None  # no other rank can be lost


class HorovodCommunicator:
    """Collectives over Horovod (Gloo or MPI; NCCL for GPU tensors when built).

    Args:
        timeout_seconds: Gloo timeout for a peer that stops answering (see the
            module docstring); sets ``HOROVOD_GLOO_TIMEOUT_SECONDS`` unless the
            environment already does. It also bounds Horovod's start-up
            rendezvous, so keep it above the slowest rank's start-up time.

    The environment variable only acts if this constructor is the first to
    initialise Horovod in the process.
    """

    def __init__(self, timeout_seconds: int = 60) -> None:
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int):
            raise ValueError(f"timeout_seconds must be an integer, got {timeout_seconds!r}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        os.environ.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(timeout_seconds))
        import horovod.tensorflow as hvd  # lazy: world size 1 never needs Horovod

        hvd.init()
        self._hvd = hvd
        self.rank = hvd.rank()
        self.size = hvd.size()
        self.local_rank = hvd.local_rank()
        # Last collective issued in each graph being traced (see module docstring).
        self._last: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _ordered(self, issue: Callable[[], Any]) -> Any:
        """Runs ``issue`` after the previous collective of the current graph."""
        if tf.executing_eagerly():
            return issue()  # eager ops already run in program order
        graph = tf.compat.v1.get_default_graph()
        previous = self._last.get(graph)
        with tf.control_dependencies([] if previous is None else [previous]):
            result = issue()
        first = result[0] if isinstance(result, list | tuple) else result
        self._last[graph] = first
        return result

    def _alltoall(self, x: tf.Tensor, splits: tf.Tensor, name: str) -> tuple[tf.Tensor, ...]:
        # Horovod has no bfloat16 collectives: move the same 16 bits as int16.
        if x.dtype == tf.bfloat16:
            received, received_splits = self._alltoall(tf.bitcast(x, tf.int16), splits, name)
            return tf.bitcast(received, tf.bfloat16), received_splits
        return self._ordered(lambda: self._hvd.alltoall(x, splits=splits, name=name))

    def alltoall(self, tensor: tf.Tensor, splits: tf.Tensor, name: str) -> tf.Tensor:
        splits = tf.cast(splits, tf.int32)

        @tf.custom_gradient
        def exchange(x):
            received, received_splits = self._alltoall(x, splits, name)

            def grad(dy):
                # The reverse exchange: what we received from rank r goes back to r.
                dy = tf.convert_to_tensor(dy)  # an IndexedSlices upstream cannot travel
                return self._alltoall(dy, received_splits, f"{name}_grad")[0]

            return received, grad

        return exchange(tensor)

    def alltoall_with_splits(
        self, tensor: tf.Tensor, splits: tf.Tensor, name: str
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self._alltoall(tf.stop_gradient(tensor), tf.cast(splits, tf.int32), name)

    def grouped_allreduce(
        self, tensors: Sequence[tf.Tensor], average: bool, name: str
    ) -> list[tf.Tensor]:
        tensors = list(tensors)
        if not tensors:
            return []
        hvd = self._hvd
        op = hvd.Average if average else hvd.Sum
        # Horovod groups need one dtype; group by dtype in first-seen order, which
        # is the same on every rank.
        dtypes = list(dict.fromkeys(t.dtype for t in tensors))
        out: list[tf.Tensor | None] = [None] * len(tensors)
        for k, dtype in enumerate(dtypes):
            positions = [i for i, t in enumerate(tensors) if t.dtype == dtype]
            reduced = self._ordered(
                lambda positions=positions, k=k: hvd.grouped_allreduce(
                    [tensors[i] for i in positions], op=op, name=f"{name}_{k}"
                )
            )
            for i, value in zip(positions, reduced, strict=True):
                out[i] = value
        return out  # type: ignore[return-value]

    def allgather(self, tensor: tf.Tensor, name: str) -> tf.Tensor:
        return self._ordered(lambda: self._hvd.allgather(tensor, name=name))

    def broadcast_variables(self, variables: Sequence[Any], root_rank: int = 0) -> None:
        # hvd.broadcast_variables needs tf.Variable.ref(), which Keras 3 variables
        # lack: broadcast the values and assign them.
        for i, variable in enumerate(variables):
            value = self._ordered(
                lambda variable=variable, i=i: self._hvd.broadcast(
                    tf.convert_to_tensor(variable), root_rank=root_rank, name=f"bcast_var_{i}"
                )
            )
            variable.assign(value)

    def barrier(self) -> None:
        self._ordered(lambda: self._hvd.allreduce(tf.zeros([1]), op=self._hvd.Sum, name="barrier"))

    def record_peers(self) -> None:
        # Who every rank is, so that a failed collective can name the rank that is gone.
        peers.record_peers(self._hvd.allgather_object(peers.this_process()), self.rank)


def make_communicator(use_horovod: bool) -> Communicator:
    """The Horovod communicator when asked for, else the single-process one.

    Args:
        use_horovod: True under ``horovodrun`` (the ``--use_horovod`` flag).
    """
    return HorovodCommunicator() if use_horovod else LocalCommunicator()
