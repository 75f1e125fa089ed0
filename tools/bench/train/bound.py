"""The compute bound: training FLOP per sample and this CPU's matmul rate."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence

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


@dataclasses.dataclass(frozen=True)
class MatmulShape:
    """One ``[batch,] [m, k] x [k, n]`` product of the training step."""

    name: str
    m: int
    k: int
    n: int
    transpose_a: bool = False
    transpose_b: bool = False
    batch: int = 0  # 0: a plain matmul; else a batched one over this many samples
    count: int = 1  # products of this shape in one step

    @property
    def flops(self) -> int:
        """FLOP of all ``count`` products."""
        return 2 * self.count * max(self.batch, 1) * self.m * self.k * self.n

    def product(self, dtype: tf.DType) -> Callable[[], tf.Tensor]:
        """A compiled product of random operands in ``dtype``, laid out as the step's are."""
        lead = [self.batch] if self.batch else []
        a_dims = [self.k, self.m] if self.transpose_a else [self.m, self.k]
        b_dims = [self.n, self.k] if self.transpose_b else [self.k, self.n]
        a = tf.cast(tf.random.uniform(lead + a_dims), dtype)
        b = tf.cast(tf.random.uniform(lead + b_dims), dtype)
        return tf.function(
            lambda: tf.matmul(a, b, transpose_a=self.transpose_a, transpose_b=self.transpose_b)
        )


def step_matmuls(
    batch_size: int,
    num_tables: int,
    embedding_dim: int,
    bottom_mlp_dims: Sequence[int],
    top_mlp_dims: Sequence[int],
    num_numerical: int = 13,
) -> list[MatmulShape]:
    """The products of one DLRM training step, with the operands' layouts TensorFlow uses.

    Per dense layer ``[B, k] x [k, n]``: the forward product, the input
    gradient ``dY W^T`` (not for the first bottom layer, whose input needs
    none) and the weight gradient ``X^T dY``. The interaction: the Gram
    matrix ``X X^T`` of ``[B, F + 1, D]`` and, as `FlopCount` counts it, two
    backward products of the same size. Their FLOP sum is ``B`` times
    `flops_per_sample`'s training FLOP less the first layer's input gradient.
    """
    shapes = []
    top_inputs = embedding_dim + (num_tables + 1) * num_tables // 2
    for tower, inputs, dims in (
        ("bottom", num_numerical, bottom_mlp_dims),
        ("top", top_inputs, top_mlp_dims),
    ):
        k = inputs
        for index, n in enumerate(dims):
            layer = f"{tower}{index} {k}x{n}"
            shapes.append(MatmulShape(f"{layer} forward", batch_size, k, n))
            if tower == "top" or index:
                shapes.append(MatmulShape(f"{layer} dX", batch_size, n, k, transpose_b=True))
            shapes.append(MatmulShape(f"{layer} dW", k, batch_size, n, transpose_a=True))
            k = n
    features = num_tables + 1
    gram = MatmulShape(
        "interaction Gram", features, embedding_dim, features, transpose_b=True, batch=batch_size
    )
    return [*shapes, gram, dataclasses.replace(gram, name="interaction backward", count=2)]


class StepMatmuls:
    """The step's products (`step_matmuls`), built once in ``dtype``, timed on demand.

    Their summed time is how fast the step could go if it did nothing but its
    products, each as fast as TensorFlow computes it alone: a bound that,
    unlike the single rate of `matmul_gflops`, accounts for the products'
    shapes (the thin layers and the first layer's 13 inputs run far below the
    peak rate), but not for running two products at once.
    """

    def __init__(self, shapes: Sequence[MatmulShape], dtype: tf.DType) -> None:
        self.shapes = list(shapes)
        self._products = [shape.product(dtype) for shape in self.shapes]
        for product in self._products:
            product().numpy()  # traces and warms up

    def seconds(self, repeats: int) -> dict[str, float]:
        """Per shape: median wall seconds of its ``count`` products.

        The products are called in turn ``repeats`` times, so a change of
        machine speed affects all alike.
        """
        timers = [StepTimer(samples_per_step=1) for _ in self.shapes]
        for _ in range(repeats):
            for product, timer in zip(self._products, timers, strict=True):
                timer.start()
                product().numpy()  # CPU tensors: numpy() waits for the result
                timer.step_end()
        return {
            shape.name: shape.count * statistics.median(timer.durations)
            for shape, timer in zip(self.shapes, timers, strict=True)
        }
