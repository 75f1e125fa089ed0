"""The cross network of DCNv2: explicit, bounded-degree feature crosses."""

from __future__ import annotations

import keras
import tensorflow as tf


def _check_positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"CrossNetwork {name} must be a positive integer, got {value!r}")


@keras.saving.register_keras_serializable(package="dlrm")
class CrossNetwork(keras.layers.Layer):
    """A stack of cross layers (Wang et al., 2021, DCN V2, arXiv:2008.13535).

    Layer ``l`` maps ``x_l`` to ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``
    (``*`` elementwise), so ``L`` layers hold every feature cross up to degree
    ``L + 1``; the residual term keeps the lower degrees. With a projection
    dim ``r`` the ``[d, d]`` matrix is the product ``W_l = U_l V_l`` of
    ``V_l [r, d]`` and ``U_l [d, r]`` (the paper's low-rank cross layer):
    ``2 d r`` weights and FLOPs per sample instead of ``d^2``.

    Args:
        num_layers: L, the number of cross layers.
        projection_dim: r of the low-rank layers; None for full-rank ``W_l``.

    Shapes: ``x0 [b, d]`` -> ``[b, d]``, in the compute dtype of the policy
    (the weights are float32 variables, cast by Keras under mixed precision).
    Weights per layer (Keras kernels act on row vectors, so they hold the
    transposes): ``cross_{l}_down`` (kernel ``[d, r]`` = ``V_l^T``, no bias)
    and ``cross_{l}_up`` (kernel ``[r, d]`` = ``U_l^T``, bias ``[d]`` = ``b_l``);
    full rank has ``cross_{l}_up`` only (kernel ``[d, d]`` = ``W_l^T``).
    Kernels are Glorot-uniform and biases zero, so at initialisation the
    network is close to the identity plus small crosses.

    Example:
        >>> cross = CrossNetwork(num_layers=2, projection_dim=4)
        >>> cross(keras.ops.ones((3, 8))).shape
        (3, 8)
    """

    def __init__(self, num_layers: int = 3, projection_dim: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        _check_positive("num_layers", num_layers)
        _check_positive("projection_dim", projection_dim, allow_none=True)
        self.num_layers = num_layers
        self.projection_dim = projection_dim
        self.input_dim: int | None = None
        self.down_layers: list[keras.layers.Dense | None] = []
        self.up_layers: list[keras.layers.Dense] = []

    def build(self, input_shape) -> None:
        dim = input_shape[-1]
        if len(input_shape) != 2 or dim is None:
            raise ValueError(f"CrossNetwork expects x0 [b, d] with a known d, got {input_shape}")
        self.input_dim = int(dim)
        for layer in range(self.num_layers):
            down = None
            width = self.input_dim
            if self.projection_dim is not None:
                down = keras.layers.Dense(
                    self.projection_dim,
                    use_bias=False,
                    kernel_initializer="glorot_uniform",
                    dtype=self.dtype_policy,
                    name=f"cross_{layer}_down",
                )
                down.build((None, width))
                width = self.projection_dim
            up = keras.layers.Dense(
                self.input_dim,
                kernel_initializer="glorot_uniform",
                bias_initializer="zeros",
                dtype=self.dtype_policy,
                name=f"cross_{layer}_up",
            )
            up.build((None, width))
            self.down_layers.append(down)
            self.up_layers.append(up)

    def call(self, x0):
        if len(x0.shape) != 2 or (x0.shape[-1] is not None and x0.shape[-1] != self.input_dim):
            raise ValueError(
                f"CrossNetwork was built for x0 [b, {self.input_dim}], got shape {x0.shape}"
            )
        x0 = tf.cast(x0, self.compute_dtype)
        x = x0
        for down, up in zip(self.down_layers, self.up_layers, strict=True):
            projected = x if down is None else down(x)
            x = x0 * up(projected) + x
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_layers=self.num_layers, projection_dim=self.projection_dim)
        return config
