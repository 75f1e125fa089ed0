"""Programs run under ``horovodrun -np 2 --gloo`` by ``test_horovod.py``.

``python -m tests.distributed.hvd_program smoke``   collectives with asserted results
``python -m tests.distributed.hvd_program parity DIR``  hybrid training, writes DIR/rank{r}.npz
    (planner's placement) and DIR/rank{r}_ordered.npz (tables in rank order)
                                                        (with the launch topology)
``python -m tests.distributed.hvd_program split DIR``   tables split by rows, per optimizer
``python -m tests.distributed.hvd_program multi_hot DIR``  multi-hot parity, per optimizer
``python -m tests.distributed.hvd_program split_multi_hot DIR``  multi-hot tables split by rows
``python -m tests.distributed.hvd_program loop DIR``    trains until killed (rank-death test)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.distributed.comm import HorovodCommunicator


def smoke(comm: HorovodCommunicator) -> None:
    """Allreduce, all-to-all (uneven splits, forward and gradient), allgather, broadcast."""
    rank, size = comm.rank, comm.size
    assert size == 2, f"run with -np 2, got {size}"

    total, mean = (
        comm.grouped_allreduce(
            [tf.constant([rank + 1.0, 10.0]), tf.constant(rank * 4.0)], average=False, name="s"
        ),
        comm.grouped_allreduce([tf.constant([rank + 1.0])], average=True, name="m"),
    )
    np.testing.assert_array_equal(total[0].numpy(), [3.0, 20.0])
    assert float(total[1]) == 4.0
    np.testing.assert_array_equal(mean[0].numpy(), [1.5])

    # Rank r sends r*10 + [0..4]; rank 0 sends 1 element to itself and 4 to rank 1,
    # rank 1 sends 3 to rank 0 and 2 to itself.
    x = tf.Variable(tf.range(5, dtype=tf.float32) + 10.0 * rank)
    splits = tf.constant([[1, 4], [3, 2]][rank])
    with tf.GradientTape() as tape:
        received = comm.alltoall(x, splits, name="smoke_a2a")
        # Weight each received element by its position + 1 to make the gradient
        # route visible.
        loss = tf.reduce_sum(received * (tf.range(tf.size(received), dtype=tf.float32) + 1.0))
    expected = [[0.0, 10.0, 11.0, 12.0], [1.0, 2.0, 3.0, 4.0, 13.0, 14.0]][rank]
    np.testing.assert_array_equal(received.numpy(), expected)
    # Rank 0 received [x0[0], x1[0:3]] with weights 1..4; rank 1 received
    # [x0[1:5], x1[3:5]] with weights 1..6. So dx0 = [1, 1, 2, 3, 4], dx1 = [2, 3, 4, 5, 6].
    grad = tape.gradient(loss, x)
    np.testing.assert_array_equal(grad.numpy(), [[1, 1, 2, 3, 4], [2, 3, 4, 5, 6]][rank])

    # 16-bit vectors (mixed precision): bfloat16 travels as int16 bits.
    for dtype in (tf.float16, tf.bfloat16):
        x16 = tf.cast(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(x16)
            received = comm.alltoall(x16, splits, name=f"smoke_a2a_{dtype.name}")
            weights = tf.cast(tf.range(tf.size(received)) + 1, dtype)
            loss = tf.reduce_sum(received * weights)
        assert received.dtype == dtype, received.dtype
        np.testing.assert_array_equal(tf.cast(received, tf.float32).numpy(), expected)
        grad = tf.cast(tape.gradient(loss, x16), tf.float32)
        np.testing.assert_array_equal(grad.numpy(), [[1, 1, 2, 3, 4], [2, 3, 4, 5, 6]][rank])

    gathered = comm.allgather(tf.fill([rank + 1, 2], float(rank)), name="smoke_gather")
    np.testing.assert_array_equal(gathered.numpy(), [[0, 0], [1, 1], [1, 1]])

    variable = tf.Variable([float(rank) + 5.0])
    comm.broadcast_variables([variable])
    np.testing.assert_array_equal(variable.numpy(), [5.0])
    comm.barrier()
    print(f"rank {rank}: smoke OK", flush=True)


def parity(comm: HorovodCommunicator, out_dir: Path) -> None:
    import horovod.tensorflow as hvd  # initialised by the communicator

    from tests.distributed.parity_setup import consecutive_placement, run_hybrid

    result = run_hybrid(comm)
    # The launch topology as Horovod sees it (hosts and ranks per host).
    result["topology"] = np.array([hvd.local_rank(), hvd.local_size(), hvd.cross_size()])
    np.savez(out_dir / f"rank{comm.rank}.npz", **result)
    # Tables arriving in table order take the other path of HybridParallel.
    ordered = run_hybrid(comm, consecutive_placement(comm.size))
    np.savez(out_dir / f"rank{comm.rank}_ordered.npz", **ordered)
    print(f"rank {comm.rank}: parity run written", flush=True)


def split(comm: HorovodCommunicator, out_dir: Path) -> None:
    """Tables 0 and 3 split by rows: SGD, Adagrad and Adam runs, DIR/split_{opt}_rank{r}.npz."""
    from tests.distributed.parity_setup import run_hybrid, split_placement

    for optimizer in ("sgd", "adagrad", "adam"):
        result = run_hybrid(comm, split_placement(), optimizer)
        np.savez(out_dir / f"split_{optimizer}_rank{comm.rank}.npz", **result)
    print(f"rank {comm.rank}: split runs written", flush=True)


def multi_hot(comm: HorovodCommunicator, out_dir: Path) -> None:
    """Multi-hot tables pooled by their owners: DIR/multi_hot_{opt}_rank{r}.npz."""
    from tests.distributed.parity_setup import MULTI_HOT, run_hybrid

    for optimizer in ("sgd", "adam"):
        result = run_hybrid(comm, optimizer=optimizer, hotness=MULTI_HOT)
        np.savez(out_dir / f"multi_hot_{optimizer}_rank{comm.rank}.npz", **result)
    print(f"rank {comm.rank}: multi-hot runs written", flush=True)


def split_multi_hot(comm: HorovodCommunicator, out_dir: Path) -> None:
    """Multi-hot tables split by rows: DIR/split_multi_hot_{opt}_rank{r}.npz."""
    from tests.distributed.parity_setup import MULTI_HOT, run_hybrid, split_multi_hot_placement

    for optimizer in ("sgd", "adagrad", "adam"):
        result = run_hybrid(comm, split_multi_hot_placement(), optimizer, MULTI_HOT)
        np.savez(out_dir / f"split_multi_hot_{optimizer}_rank{comm.rank}.npz", **result)
    print(f"rank {comm.rank}: split multi-hot runs written", flush=True)


def split_linear(comm: HorovodCommunicator, out_dir: Path) -> None:
    """A model with a linear part and every optimizer regulariser, multi-hot tables
    split by rows: DIR/split_linear_{opt}_rank{r}.npz."""
    from tests.distributed import parity_setup as ps

    for optimizer in ("sgd", "adagrad", "adam"):
        result = ps.run_hybrid(
            comm,
            ps.split_multi_hot_placement(),
            optimizer,
            ps.MULTI_HOT,
            linear=True,
            regularisation=ps.REGULARISATION,
        )
        np.savez(out_dir / f"split_linear_{optimizer}_rank{comm.rank}.npz", **result)
    print(f"rank {comm.rank}: split linear runs written", flush=True)


def loop(comm: HorovodCommunicator, out_dir: Path) -> None:
    """Trains forever; reports how a collective fails once a peer is gone."""
    from tests.distributed import parity_setup as ps

    hp = ps.make_hybrid(comm, ps.build_model())
    step = ps.hybrid_train_step(hp)
    batch = ps.rank_view(ps.make_batches((ps.GLOBAL_BATCH,), seed=1)[0], hp)
    step(*batch)
    (out_dir / f"pid{comm.rank}").write_text(f"{__import__('os').getpid()}\n")
    while True:
        try:
            step(*batch)
        except Exception as error:  # the error type depends on TF/Horovod internals
            (out_dir / f"failed{comm.rank}").write_text(f"{time.time()}\n{error!r}\n")
            print(f"rank {comm.rank}: collective failed: {error!r} {error}"[:400], flush=True)
            sys.exit(3)


def main(argv: list[str]) -> None:
    mode = argv[1]
    comm = HorovodCommunicator()
    if mode == "smoke":
        smoke(comm)
    elif mode == "parity":
        parity(comm, Path(argv[2]))
    elif mode == "split":
        split(comm, Path(argv[2]))
    elif mode == "multi_hot":
        multi_hot(comm, Path(argv[2]))
    elif mode == "split_multi_hot":
        split_multi_hot(comm, Path(argv[2]))
    elif mode == "split_linear":
        split_linear(comm, Path(argv[2]))
    elif mode == "loop":
        loop(comm, Path(argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected smoke, parity or loop")


if __name__ == "__main__":
    main(sys.argv)
