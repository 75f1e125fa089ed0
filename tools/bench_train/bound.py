"""The compute bound: training FLOP per sample and this CPU's matmul rate."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

import tensorflow as tf

from models.training.timing import StepTimer


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """Multiply-adds (MAC) per sample of the dense parts of DLRM or DCNv2.

    One MAC is 2 FLOP. The backward pass costs twice the forward (a gradient
    with respect to the inputs and one with respect to the weights, each a
    matmul of the forward's size), so training costs 3x the forward pass.
    Element-wise work (bias, ReLU, casts, gathers) is not counted.
    """

    bottom_mlp_macs: int
    top_mlp_macs: int
    interaction_macs: int  # DLRM: the Gram matrix; DCNv2: the cross layers

    @property
    def forward_flops(self) -> int:
        return 2 * (self.bottom_mlp_macs + self.top_mlp_macs + self.interaction_macs)

    @property
    def training_flops(self) -> int:
        return 3 * self.forward_flops


def _mlp_macs(inputs: int, units: Sequence[int]) -> int:
    macs = 0
    for width in units:
        macs += inputs * width
        inputs = width
    return macs


def flops_per_sample(
    num_tables: int,
    embedding_dim: int,
    bottom_mlp_dims: Sequence[int],
    top_mlp_dims: Sequence[int],
    num_numerical: int = 13,
) -> FlopCount:
    """FLOP count of one training sample (see `FlopCount`).

    The interaction is the Gram matrix of the F + 1 vectors of size D, computed
    in full (``(F + 1)^2 D`` MAC) as `DotInteraction` does; the top MLP reads
    ``D + (F + 1) F / 2`` features. Reference dims: 14.75 MFLOP.
    """
    features = num_tables + 1
    return FlopCount(
        bottom_mlp_macs=_mlp_macs(num_numerical, bottom_mlp_dims),
        top_mlp_macs=_mlp_macs(embedding_dim + features * (features - 1) // 2, top_mlp_dims),
        interaction_macs=features * features * embedding_dim,
    )


def dcnv2_flops_per_sample(
    num_tables: int,
    embedding_dim: int,
    bottom_mlp_dims: Sequence[int],
    top_mlp_dims: Sequence[int],
    num_cross_layers: int,
    cross_layer_projection_dim: int,
    num_numerical: int = 13,
) -> FlopCount:
    """FLOP count of one DCNv2 training sample (see `FlopCount`).

    The cross network reads ``d = (F + 1) D`` features; each cross layer costs
    ``2 d r`` MAC with projection dim ``r`` (``x V`` then ``(x V) U``), or
    ``d^2`` at full rank (``r = 0``); its element-wise ``x0 * h + x`` is not
    counted. The top (deep) MLP reads the ``d`` outputs. MLPerf's sizes
    (3 layers, r = 512, D = 128, F = 26): 96.18 MFLOP.
    """
    width = (num_tables + 1) * embedding_dim
    per_layer = (
        width * width if cross_layer_projection_dim == 0 else 2 * width * cross_layer_projection_dim
    )
    return FlopCount(
        bottom_mlp_macs=_mlp_macs(num_numerical, bottom_mlp_dims),
        top_mlp_macs=_mlp_macs(width, top_mlp_dims),
        interaction_macs=num_cross_layers * per_layer,
    )


def matmul_gflops(dtype: tf.DType, m: int, k: int, n: int, repeats: int) -> float:
    """Median GFLOP/s of an ``[m, k] x [k, n]`` product in ``dtype`` (after one warm-up)."""
    a = tf.random.uniform([m, k], dtype=tf.float32)
    b = tf.random.uniform([k, n], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    product = tf.function(tf.matmul)
    product(a, b).numpy()
    timer = StepTimer(samples_per_step=1)
    for _ in range(repeats):
        timer.start()
        product(a, b).numpy()  # CPU tensors: numpy() waits for the result, no copy
        timer.step_end()
    return 2.0 * m * k * n / statistics.median(timer.durations) / 1e9
