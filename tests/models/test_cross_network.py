"""Cross network and DCNv2 interaction against numpy, forward and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.layers import CrossInteraction, CrossNetwork


@pytest.fixture(autouse=True)
def _float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _weights(cross: CrossNetwork) -> list[tuple]:
    """Per layer (down kernel or None, up kernel, bias) as float64 numpy."""
    layers = []
    for down, up in zip(cross.down_layers, cross.up_layers, strict=True):
        d = None if down is None else down.kernel.numpy().astype(np.float64)
        layers.append((d, up.kernel.numpy().astype(np.float64), up.bias.numpy().astype(np.float64)))
    return layers


def _numpy_cross(x0, layers, upstream):
    """Forward x_{l+1} = x0 * (x_l W + b) + x_l and its backward, by hand."""
    xs, projections = [x0], []
    for down, up, bias in layers:
        x = xs[-1]
        p = x if down is None else x @ down
        projections.append(p)
        xs.append(x0 * (p @ up + bias) + x)
    grads = []  # per layer (d_down, d_up, d_bias), filled backwards
    dx = upstream.copy()
    dx0 = np.zeros_like(x0)
    for (down, up, bias), x, p in zip(
        reversed(layers), reversed(xs[:-1]), reversed(projections), strict=True
    ):
        h = p @ up + bias
        dx0 += dx * h
        dh = dx * x0
        d_up, d_bias = p.T @ dh, dh.sum(0)
        dp = dh @ up.T
        if down is None:
            d_down, dx_prev = None, dp
        else:
            d_down, dx_prev = x.T @ dp, dp @ down.T
        grads.append((d_down, d_up, d_bias))
        dx = dx + dx_prev  # the residual term passes dx through
    dx0 += dx  # x_0 is also the first x_l
    return xs[-1], dx0, list(reversed(grads))


@pytest.mark.parametrize(("num_layers", "projection_dim"), [(1, None), (3, None), (3, 2), (2, 7)])
def test_cross_network_forward_and_gradients_match_numpy(num_layers, projection_dim):
    rng = np.random.default_rng(num_layers * 10 + (projection_dim or 0))
    batch, dim = 5, 6
    cross = CrossNetwork(num_layers, projection_dim)
    cross.build((None, dim))
    # Non-zero biases, so that they matter in the check.
    for up in cross.up_layers:
        up.bias.assign(rng.normal(size=dim).astype(np.float32))
    x0 = rng.normal(size=(batch, dim)).astype(np.float32)
    upstream = rng.normal(size=(batch, dim))

    xt = tf.constant(x0)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = cross(xt)
        loss = tf.reduce_sum(out * tf.constant(upstream, tf.float32))
    got_dx0, *got_weights = tape.gradient(loss, [xt, *cross.trainable_variables])

    want, want_dx0, want_grads = _numpy_cross(x0.astype(np.float64), _weights(cross), upstream)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_dx0.numpy(), want_dx0, rtol=1e-4, atol=1e-4)
    flat_want = [g for layer in want_grads for g in layer if g is not None]
    assert len(got_weights) == len(flat_want)
    for got, expected in zip(got_weights, flat_want, strict=True):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_one_full_rank_layer_by_hand():
    """x1 = x0 * (x0 W + b) + x0 with integers small enough to check by eye."""
    cross = CrossNetwork(1)
    cross.build((None, 2))
    cross.up_layers[0].kernel.assign([[1.0, 2.0], [0.0, 1.0]])
    cross.up_layers[0].bias.assign([1.0, -1.0])
    # x0 = (1, 2): x0 W = (1, 4), + b = (2, 3); x0 * that = (2, 6); + x0 = (3, 8).
    np.testing.assert_array_equal(cross(tf.constant([[1.0, 2.0]])).numpy(), [[3.0, 8.0]])


def test_low_rank_equals_full_rank_with_the_product_matrix():
    rng = np.random.default_rng(3)
    low = CrossNetwork(2, projection_dim=3)
    low.build((None, 5))
    full = CrossNetwork(2)
    full.build((None, 5))
    for (down, up), full_up in zip(
        zip(low.down_layers, low.up_layers, strict=True), full.up_layers, strict=True
    ):
        up.bias.assign(rng.normal(size=5).astype(np.float32))
        full_up.kernel.assign(down.kernel.numpy() @ up.kernel.numpy())
        full_up.bias.assign(up.bias.numpy())
    x0 = tf.constant(rng.normal(size=(4, 5)).astype(np.float32))
    np.testing.assert_allclose(low(x0).numpy(), full(x0).numpy(), rtol=1e-5, atol=1e-5)


def test_weight_shapes_and_count():
    low = CrossNetwork(3, projection_dim=4)
    low.build((None, 10))
    assert [tuple(v.shape) for v in low.trainable_variables[:3]] == [(10, 4), (4, 10), (10,)]
    assert sum(int(np.prod(v.shape)) for v in low.trainable_variables) == 3 * (2 * 10 * 4 + 10)
    full = CrossNetwork(2)
    full.build((None, 10))
    assert [tuple(v.shape) for v in full.trainable_variables] == [(10, 10), (10,)] * 2


def test_mixed_precision_computes_in_policy_dtype_with_float32_weights():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cross = CrossNetwork(2, projection_dim=3)
    out = cross(tf.ones((2, 6), tf.float32))
    assert out.dtype == tf.bfloat16
    assert all(v.dtype == "float32" for v in cross.weights)


@pytest.mark.parametrize("projection_dim", [None, 3])
def test_cross_network_get_config_round_trip(projection_dim):
    cross = CrossNetwork(num_layers=2, projection_dim=projection_dim, name="cn")
    config = cross.get_config()
    assert config["num_layers"] == 2 and config["projection_dim"] == projection_dim
    clone = CrossNetwork.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cross))
    assert isinstance(restored, CrossNetwork) and restored.get_config() == config
    # Same weights give the same output.
    x0 = tf.constant(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    cross(x0)
    clone(x0)
    clone.set_weights(cross.get_weights())
    np.testing.assert_array_equal(clone(x0).numpy(), cross(x0).numpy())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"num_layers": 0}, "num_layers must be a positive integer, got 0"),
        ({"num_layers": 2, "projection_dim": 0}, "projection_dim must be a positive integer"),
        ({"num_layers": True}, "num_layers must be a positive integer, got True"),
    ],
)
def test_cross_network_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        CrossNetwork(**args)


def test_cross_network_rejects_wrong_width():
    cross = CrossNetwork(1)
    cross(tf.ones((2, 4)))
    with pytest.raises(ValueError, match=r"built for x0 \[b, 4\], got shape \(2, 5\)"):
        cross(tf.ones((2, 5)))


def test_cross_interaction_concatenates_bottom_then_embeddings():
    rng = np.random.default_rng(5)
    bottom = rng.normal(size=(3, 4)).astype(np.float32)
    embeddings = rng.normal(size=(3, 5, 4)).astype(np.float32)
    layer = CrossInteraction(num_layers=2, projection_dim=3)
    out = layer(tf.constant(bottom), tf.constant(embeddings))
    assert out.shape == (3, 24)
    x0 = np.concatenate([bottom, embeddings.reshape(3, 20)], axis=1).astype(np.float64)
    want, _, _ = _numpy_cross(x0, _weights(layer.cross), np.zeros_like(x0))
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    # Pieces ([b, D] and [b, k, D], float32 under any policy) give the same output.
    pieces = [embeddings[:, 0], embeddings[:, 1:4], embeddings[:, 4]]
    np.testing.assert_array_equal(
        layer(tf.constant(bottom), [tf.constant(p) for p in pieces]).numpy(), out.numpy()
    )
    assert layer.compute_output_shape((None, 4), (None, 5, 4)) == (None, 24)
    assert layer.compute_output_shape((None, 4), [(None, 4), (None, 3, 4)]) == (None, 20)


def test_cross_interaction_gradients_reach_every_piece():
    rng = np.random.default_rng(6)
    layer = CrossInteraction(num_layers=1)
    bottom = tf.constant(rng.normal(size=(2, 3)).astype(np.float32))
    pieces = [tf.constant(rng.normal(size=(2, 3)).astype(np.float32)) for _ in range(2)]
    upstream = rng.normal(size=(2, 9))
    with tf.GradientTape() as tape:
        tape.watch([bottom, *pieces])
        loss = tf.reduce_sum(layer(bottom, pieces) * tf.constant(upstream, tf.float32))
    grads = tape.gradient(loss, [bottom, *pieces])
    x0 = np.concatenate([bottom.numpy(), *(p.numpy() for p in pieces)], axis=1).astype(np.float64)
    _, dx0, _ = _numpy_cross(x0, _weights(layer.cross), upstream)
    np.testing.assert_allclose(
        np.concatenate([g.numpy() for g in grads], axis=1), dx0, rtol=1e-4, atol=1e-4
    )


def test_cross_interaction_get_config_round_trip_and_errors():
    layer = CrossInteraction(num_layers=3, projection_dim=8, name="interaction")
    config = layer.get_config()
    assert (config["num_layers"], config["projection_dim"]) == (3, 8)
    assert CrossInteraction.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="CrossInteraction: bottom dim 3 differs from embedding"):
        layer(tf.ones((2, 3)), tf.ones((2, 4, 4)))
