"""Throughput of the hybrid-parallel train step (the issue-5 benchmark figures).

Benchmark configuration of the model issue: global batch 4096, D = 128, the
reference MLPs, 26 tables with the Criteo threshold-15 cardinalities capped at
200,000 rows, power-law ids, float32 (``--bf16``: mixed_bfloat16), plain SGD.
Prints (rank 0) the placement, embedding bytes per rank, all-to-all bytes per
step and samples/s.

    python -m tests.distributed.bench_hybrid
    horovodrun -np 2 --gloo python -m tests.distributed.bench_hybrid --horovod

Not a test (pytest does not collect it); it lives beside the distributed tests
because it drives the same code as they do.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from models.data.slicing import batch_slice
from models.distributed.comm import make_communicator
from models.distributed.hybrid import HybridParallel
from models.distributed.placement import embedding_table_bytes, plan_placement
from tests.distributed.test_placement import CRITEO_CAPPED


def _batches(hp: HybridParallel, count: int, seed: int) -> list[tuple[tf.Tensor, ...]]:
    rng = np.random.default_rng(seed)
    rows = hp.global_batch_size
    start, size = batch_slice(rows, hp.comm.rank, hp.comm.size)
    batches = []
    for _ in range(count):
        # Power law: id = floor(rows * u^4) puts most lookups on the first rows.
        categorical = np.stack(
            [(CRITEO_CAPPED[t] * rng.random(rows) ** 4).astype(np.int32) for t in hp.owned_tables],
            axis=1,
        ).reshape(rows, len(hp.owned_tables))
        numerical = rng.normal(size=(rows, 13)).astype(np.float32)[start : start + size]
        labels = (rng.random((rows, 1)) < 0.25).astype(np.float32)[start : start + size]
        batches.append((tf.constant(numerical), tf.constant(categorical), tf.constant(labels)))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horovod", action="store_true", help="run under horovodrun")
    parser.add_argument("--batch_size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup_steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads, 0 = TF default")
    parser.add_argument("--bf16", action="store_true", help="mixed_bfloat16 policy")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.bf16:
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")

    from models.dlrm import DLRM

    comm = make_communicator(args.horovod)
    tf.keras.utils.set_random_seed(0)
    model = DLRM(CRITEO_CAPPED, embedding_dim=128)
    placement = plan_placement(embedding_table_bytes(CRITEO_CAPPED, 128), comm.size)
    hp = HybridParallel(model, comm, placement, args.batch_size)
    hp.broadcast_dense_variables()
    embedding_vars, dense_vars = hp.owned_embedding_variables, model.dense_variables

    @tf.function
    def step(numerical, categorical, labels):
        with tf.GradientTape() as tape:
            logits = hp.forward(numerical, categorical, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        embedding_grads, dense_grads = hp.reduce_gradients(
            *tape.gradient(loss, [embedding_vars, dense_vars])
        )
        for variable, grad in zip(embedding_vars, embedding_grads, strict=True):
            # Sparse update: only the looked-up rows change, as the real optimizers do.
            variable.value.scatter_sub(tf.IndexedSlices(0.01 * grad.values, grad.indices))
        for variable, grad in zip(dense_vars, dense_grads, strict=True):
            variable.assign_sub(0.01 * grad)
        return hp.mean_across_ranks(loss)

    batches = _batches(hp, 4, seed=comm.rank)
    for i in range(args.warmup_steps):
        step(*batches[i % len(batches)]).numpy()
    comm.barrier()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(*batches[i % len(batches)])
    loss.numpy()
    seconds = time.perf_counter() - start
    if comm.rank == 0:
        print(hp.describe())
        print(
            f"world {comm.size} {'bf16' if args.bf16 else 'fp32'}: {args.steps} steps of "
            f"{args.batch_size} in {seconds:.2f} s: "
            f"{args.steps * args.batch_size / seconds:.0f} samples/s, "
            f"{1000 * seconds / args.steps:.1f} ms/step; tables on rank 0: "
            f"{hp.local_tables_bytes / 2**20:.1f} MiB of {hp.all_tables_bytes / 2**20:.1f} MiB"
        )


if __name__ == "__main__":
    main()
