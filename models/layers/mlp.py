"""Multi-layer perceptron with the reference DLRM initialisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras


def _validate_units(units: Sequence[int]) -> tuple[int, ...]:
    units = tuple(units)
    if not units:
        raise ValueError("MLP needs at least one layer, got units=()")
    bad = [u for u in units if not isinstance(u, int) or isinstance(u, bool) or u <= 0]
    if bad:
        raise ValueError(f"MLP units must be positive integers, got {bad} in units={units}")
    return units


@keras.saving.register_keras_serializable(package="dlrm")
class MLP(keras.layers.Layer):
    """A stack of dense layers with ReLU between them.

    Initialisation follows the reference DLRM (Naumov et al., 2019): weights
    ~ N(0, sqrt(2 / (fan_in + fan_out))), biases ~ N(0, sqrt(1 / units)).

    Args:
        units: width of each layer, e.g. ``(512, 256, 128)``.
        final_activation: activation of the last layer, ``"relu"`` or ``None``
            (e.g. for logits).
        final_layer_dtype: dtype policy of the last layer only; ``"float32"``
            keeps logits in float32 under a mixed-precision policy. ``None``
            uses the layer's own policy.
        dropout: rate of the dropout after every layer but the last (Srivastava
            et al., 2014), active only when called with ``training=True``;
            0 adds no layer at all.

    Example:
        >>> mlp = MLP((4, 1), final_activation=None)
        >>> mlp(keras.ops.ones((2, 3))).shape
        (2, 1)
    """

    def __init__(
        self,
        units: Sequence[int],
        final_activation: str | None = "relu",
        final_layer_dtype: str | None = None,
        dropout: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.units = _validate_units(units)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        if final_activation not in ("relu", None):
            raise ValueError(
                f"MLP final_activation must be 'relu' or None, got {final_activation!r}"
            )
        self.final_activation = final_activation
        self.final_layer_dtype = final_layer_dtype
        self.dense_layers = []
        for i, width in enumerate(self.units):
            last = i == len(self.units) - 1
            self.dense_layers.append(
                keras.layers.Dense(
                    width,
                    activation=final_activation if last else "relu",
                    # untruncated fan_avg normal is exactly N(0, sqrt(2/(fan_in+fan_out))).
                    kernel_initializer=keras.initializers.VarianceScaling(
                        scale=1.0, mode="fan_avg", distribution="untruncated_normal"
                    ),
                    bias_initializer=keras.initializers.RandomNormal(stddev=math.sqrt(1.0 / width)),
                    dtype=(final_layer_dtype if last and final_layer_dtype else self.dtype_policy),
                    name=f"dense_{i}",
                )
            )
        # The last layer's output (the bottom MLP's vector, the logit) is never dropped.
        self.dropout_layers = [
            keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
            for i in range(len(self.units) - 1 if self.dropout else 0)
        ]

    def build(self, input_shape) -> None:
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = (*shape[:-1], layer.units)

    def call(self, inputs, training=None):
        x = inputs
        for i, layer in enumerate(self.dense_layers):
            x = layer(x)  # Keras casts x to each layer's compute dtype
            if i < len(self.dropout_layers):
                x = self.dropout_layers[i](x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units[-1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            units=list(self.units),
            final_activation=self.final_activation,
            final_layer_dtype=self.final_layer_dtype,
            dropout=self.dropout,
        )
        return config
