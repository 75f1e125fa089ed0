"""Layers against hand-computed numpy values, forward and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.layers import MLP, DotInteraction, EmbeddingTable


@pytest.fixture(autouse=True)
def _float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _relu(x):
    return np.maximum(x, 0.0)


def test_mlp_forward_and_gradients_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    mlp = MLP((4, 2), final_activation=None)
    mlp.build((None, 3))
    w1, b1 = (v.numpy().astype(np.float64) for v in mlp.dense_layers[0].weights)
    w2, b2 = (v.numpy().astype(np.float64) for v in mlp.dense_layers[1].weights)
    upstream = rng.normal(size=(5, 2))

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = mlp(xt)
        loss = tf.reduce_sum(out * tf.constant(upstream, tf.float32))
    grads = tape.gradient(loss, [xt, *mlp.trainable_variables])

    z1 = x @ w1 + b1
    h1 = _relu(z1)
    expected = h1 @ w2 + b2
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)

    d_w2 = h1.T @ upstream
    d_b2 = upstream.sum(0)
    d_z1 = (upstream @ w2.T) * (z1 > 0)
    d_w1 = x.T @ d_z1
    d_b1 = d_z1.sum(0)
    d_x = d_z1 @ w1.T
    for got, want in zip(grads, [d_x, d_w1, d_b1, d_w2, d_b2], strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_mlp_final_relu_clips_negative_outputs():
    mlp = MLP((3,), final_activation="relu")
    mlp.build((None, 2))
    mlp.dense_layers[0].kernel.assign(-np.ones((2, 3), np.float32))
    mlp.dense_layers[0].bias.assign(np.zeros(3, np.float32))
    out = mlp(tf.ones((1, 2))).numpy()
    np.testing.assert_array_equal(out, np.zeros((1, 3)))


def test_mlp_initialisation_follows_reference_dlrm():
    keras.utils.set_random_seed(1)
    mlp = MLP((400, 300))
    mlp.build((None, 500))
    kernel = mlp.dense_layers[0].kernel.numpy()
    bias = mlp.dense_layers[1].bias.numpy()
    # weights N(0, sqrt(2 / (fan_in + fan_out))), biases N(0, sqrt(1 / units))
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / 900), rel=0.02)
    assert abs(kernel.mean()) < 0.002
    # untruncated: values beyond 2 sigma exist (a truncated normal has none)
    assert np.abs(kernel).max() > 3 * np.sqrt(2.0 / 900)
    assert bias.std() == pytest.approx(np.sqrt(1.0 / 300), rel=0.15)


def test_mlp_validates_arguments():
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(())
    with pytest.raises(ValueError, match=r"\[0\]"):
        MLP((4, 0))
    with pytest.raises(ValueError, match="final_activation"):
        MLP((4,), final_activation="sigmoid")


def test_mlp_config_round_trip_and_float32_last_layer_under_mixed_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mlp = MLP((4, 1), final_activation=None, final_layer_dtype="float32", name="top")
    out = mlp(tf.ones((2, 3)))
    assert out.dtype == tf.float32
    assert mlp.dense_layers[0].compute_dtype == "bfloat16"
    clone = MLP.from_config(mlp.get_config())
    assert clone.units == (4, 1)
    assert clone.final_activation is None
    assert clone.final_layer_dtype == "float32"
    assert clone.name == "top"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(mlp))
    assert restored.units == (4, 1)


def _numpy_dot_interaction(bottom, embeddings):
    features = np.concatenate([bottom[:, None, :], embeddings], axis=1)
    n = features.shape[1]
    out = []
    for row in range(features.shape[0]):
        pairs = [features[row, i] @ features[row, j] for i in range(n) for j in range(i)]
        out.append(np.concatenate([bottom[row], pairs]))
    return np.array(out)


def test_dot_interaction_forward_by_hand():
    bottom = np.array([[1.0, 2.0]], np.float32)
    embeddings = np.array([[[3.0, 4.0], [5.0, 6.0]]], np.float32)
    out = DotInteraction()(tf.constant(bottom), tf.constant(embeddings)).numpy()
    # [bottom, e0.b, e1.b, e1.e0] = [1, 2, 3+8, 5+12, 15+24]
    np.testing.assert_allclose(out, [[1.0, 2.0, 11.0, 17.0, 39.0]])


def test_dot_interaction_default_size_and_random_values():
    rng = np.random.default_rng(3)
    bottom = rng.normal(size=(3, 128)).astype(np.float32)
    embeddings = rng.normal(size=(3, 26, 128)).astype(np.float32)
    out = DotInteraction()(tf.constant(bottom), tf.constant(embeddings)).numpy()
    assert out.shape == (3, 479)
    want = _numpy_dot_interaction(bottom.astype(np.float64), embeddings.astype(np.float64))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_dot_interaction_gradients_match_numpy():
    rng = np.random.default_rng(4)
    b, f, d = 2, 3, 4
    bottom = tf.constant(rng.normal(size=(b, d)), tf.float32)
    embeddings = tf.constant(rng.normal(size=(b, f, d)), tf.float32)
    n = f + 1
    upstream = rng.normal(size=(b, d + n * (n - 1) // 2))
    with tf.GradientTape() as tape:
        tape.watch([bottom, embeddings])
        out = DotInteraction()(bottom, embeddings)
        loss = tf.reduce_sum(out * tf.constant(upstream, tf.float32))
    d_bottom, d_emb = tape.gradient(loss, [bottom, embeddings])

    features = np.concatenate([bottom.numpy()[:, None], embeddings.numpy()], 1).astype(np.float64)
    rows, cols = np.tril_indices(n, k=-1)
    want = np.zeros_like(features)
    for r in range(b):
        g = np.zeros((n, n))
        g[rows, cols] = upstream[r, d:]
        # d/dx_i of sum_{i>j} g_ij <x_i, x_j> = sum_j (g + g^T)_ij x_j
        want[r] = (g + g.T) @ features[r]
    want[:, 0] += upstream[:, :d]  # the pass-through of the bottom output
    np.testing.assert_allclose(d_bottom.numpy(), want[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_emb.numpy(), want[:, 1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_dot_interaction_gradient_in_bfloat16_and_under_xla(jit_compile):
    rng = np.random.default_rng(6)
    bottom = rng.normal(size=(4, 8))
    embeddings = rng.normal(size=(4, 5, 8))
    upstream = rng.normal(size=(4, 8 + 15))
    layer = DotInteraction(dtype="mixed_bfloat16")

    @tf.function(jit_compile=jit_compile)
    def gradients(b, e):
        with tf.GradientTape() as tape:
            tape.watch([b, e])
            out = layer(tf.cast(b, tf.bfloat16), tf.cast(e, tf.bfloat16))
            loss = tf.reduce_sum(tf.cast(out, tf.float32) * tf.constant(upstream, tf.float32))
        return tape.gradient(loss, [b, e])

    d_bottom, d_emb = gradients(
        tf.constant(bottom, tf.float32), tf.constant(embeddings, tf.float32)
    )
    features = np.concatenate([bottom[:, None], embeddings], 1)
    rows, cols = np.tril_indices(6, k=-1)
    want = np.zeros_like(features)
    for r in range(4):
        g = np.zeros((6, 6))
        g[rows, cols] = upstream[r, 8:]
        want[r] = (g + g.T) @ features[r]
    want[:, 0] += upstream[:, :8]
    scale = np.abs(want).max()
    # bfloat16 keeps 8 significant bits
    np.testing.assert_allclose(d_bottom.numpy(), want[:, 0], atol=0.03 * scale)
    np.testing.assert_allclose(d_emb.numpy(), want[:, 1:], atol=0.03 * scale)


def test_dot_interaction_rejects_bad_shapes():
    layer = DotInteraction()
    with pytest.raises(ValueError, match="bottom dim 3 differs from embedding dim 4"):
        layer(tf.ones((2, 3)), tf.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"embeddings \[b, F, D\]"):
        layer(tf.ones((2, 4)), tf.ones((2, 4)))
    assert DotInteraction.from_config(DotInteraction(name="x").get_config()).name == "x"


def test_embedding_lookup_gradient_and_init():
    keras.utils.set_random_seed(5)
    table = EmbeddingTable(400, 3)
    table.build((None,))
    values = table.embeddings.numpy()
    limit = np.sqrt(1 / 400)
    assert values.min() >= -limit and values.max() <= limit
    assert values.max() > 0.9 * limit and values.min() < -0.9 * limit

    ids = tf.constant([7, 2, 7], tf.int32)
    upstream = np.arange(9, dtype=np.float32).reshape(3, 3)
    with tf.GradientTape() as tape:
        out = table(ids)
        loss = tf.reduce_sum(out * upstream)
    np.testing.assert_array_equal(out.numpy(), values[[7, 2, 7]])
    grad = tape.gradient(loss, table.embeddings)
    assert isinstance(grad, tf.IndexedSlices)
    dense = tf.convert_to_tensor(grad).numpy()
    want = np.zeros((400, 3), np.float32)
    np.add.at(want, [7, 2, 7], upstream)
    np.testing.assert_array_equal(dense, want)


def test_embedding_stays_float32_under_mixed_policy_and_round_trips():
    keras.mixed_precision.set_global_policy("mixed_float16")
    table = EmbeddingTable(10, 4, name="t0")
    out = table(tf.constant([1, 2]))
    assert table.embeddings.dtype == "float32"
    assert out.dtype == tf.float32
    clone = EmbeddingTable.from_config(table.get_config())
    assert (clone.num_rows, clone.dim, clone.name) == (10, 4, "t0")
    assert clone.embeddings.dtype == "float32"


def test_embedding_validates_arguments():
    with pytest.raises(ValueError, match="num_rows must be a positive integer, got 0"):
        EmbeddingTable(0, 4)
    with pytest.raises(ValueError, match="ids of shape"):
        EmbeddingTable(3, 2)(tf.zeros((2, 2), tf.int32))


def test_dot_interaction_pieces_equal_one_tensor_forward_and_backward():
    rng = np.random.default_rng(8)
    bottom = tf.constant(rng.normal(size=(3, 4)), tf.float32)
    embeddings = tf.constant(rng.normal(size=(3, 5, 4)), tf.float32)
    upstream = tf.constant(rng.normal(size=(3, 4 + 15)), tf.float32)
    layer = DotInteraction()

    def as_tensor(e):
        return e

    def per_table(e):  # one [b, D] piece per table
        return tf.unstack(e, axis=1)

    def mixed(e):  # [b, k, D] blocks and [b, D] pieces
        return [e[:, :2], e[:, 2], e[:, 3:]]

    results = []
    for split in (as_tensor, per_table, mixed):
        with tf.GradientTape() as tape:
            tape.watch([bottom, embeddings])
            out = layer(bottom, split(embeddings))
            loss = tf.reduce_sum(out * upstream)
        grads = tape.gradient(loss, [bottom, embeddings])
        results.append((out.numpy(), *[g.numpy() for g in grads]))
    for got in results[1:]:
        for a, b in zip(got, results[0], strict=True):
            np.testing.assert_array_equal(a, b)
    assert layer.compute_output_shape((3, 4), [(3, 2, 4), (3, 4), (3, 2, 4)]) == (3, 19)
    assert layer.compute_output_shape((3, 4), (3, 5, 4)) == (3, 19)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_dot_interaction_16_bit_pair_selection_is_exact(dtype):
    # In 16-bit dtypes the pairs are picked (and the gradient spread) by a product
    # with a 0/1 matrix; it must give exactly the Gram entries a gather gives.
    from models.layers.dot_interaction import _lower_triangle_dots

    rng = np.random.default_rng(9)
    n = 6
    x = tf.cast(tf.constant(rng.normal(size=(16, n, 8)) * 10.0, tf.float32), dtype)
    upstream = tf.cast(tf.constant(rng.normal(size=(16, n * (n - 1) // 2)) * 10.0), dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        pairs = _lower_triangle_dots(x, n)
    grad = tape.gradient(pairs, x, output_gradients=upstream)
    gram = tf.matmul(x, x, transpose_b=True).numpy().astype(np.float32)
    rows, cols = np.tril_indices(n, k=-1)
    np.testing.assert_array_equal(pairs.numpy().astype(np.float32), gram[:, rows, cols])
    m = np.zeros((16, n, n), np.float32)
    m[:, rows, cols] = upstream.numpy().astype(np.float32)
    m = tf.cast(m + m.transpose(0, 2, 1), dtype)
    np.testing.assert_array_equal(grad.numpy(), tf.matmul(m, x).numpy())


def test_dot_interaction_piece_errors_name_the_piece():
    layer = DotInteraction()
    with pytest.raises(ValueError, match=r"embeddings piece 1 shape \(2, 3, 4, 4\)"):
        layer(tf.ones((2, 4)), [tf.ones((2, 4)), tf.ones((2, 3, 4, 4))])
    with pytest.raises(ValueError, match="bottom dim 4 differs from embedding dim 3"):
        layer(tf.ones((2, 4)), [tf.ones((2, 4)), tf.ones((2, 3))])


def test_embedding_row_range_holds_the_whole_tables_rows(monkeypatch):
    # Small init blocks so that ranges start and end inside and across blocks.
    monkeypatch.setattr("models.layers.embedding.INIT_BLOCK_ROWS", 4)
    whole = EmbeddingTable(11, 3, seed=9).embeddings.numpy()
    limit = np.sqrt(1 / 11)
    assert whole.min() >= -limit and whole.max() <= limit
    assert len({tuple(row) for row in whole}) == 11  # every block draws new rows
    for start, end in [(0, 4), (3, 9), (4, 8), (10, 11), (0, 11)]:
        part = EmbeddingTable(11, 3, seed=9, row_start=start, row_end=end, name="part")
        assert part.embeddings.shape == (end - start, 3)
        np.testing.assert_array_equal(part.embeddings.numpy(), whole[start:end])
        assert part.is_row_range == ((start, end) != (0, 11))
        # Ids of a range are its own rows; the config round-trips the range.
        np.testing.assert_array_equal(part(tf.constant([0])).numpy(), whole[[start]])
        clone = EmbeddingTable.from_config(part.get_config())
        assert (clone.row_start, clone.row_end) == (start, end)
    with pytest.raises(ValueError, match=r"rows \[5, 5\) are not a non-empty range of its 11"):
        EmbeddingTable(11, 3, row_start=5, row_end=5)
    with pytest.raises(ValueError, match=r"rows \[0, 12\)"):
        EmbeddingTable(11, 3, row_end=12)


def test_mlp_dropout_acts_between_layers_in_training_only():
    keras.utils.set_random_seed(3)
    plain = MLP((64, 64, 1), final_activation=None)
    dropped = MLP((64, 64, 1), final_activation=None, dropout=0.5)
    x = tf.constant(np.random.default_rng(0).normal(size=(256, 8)), tf.float32)
    plain.build(x.shape)
    dropped.build(x.shape)
    for source, target in zip(plain.dense_layers, dropped.dense_layers, strict=True):
        target.set_weights(source.get_weights())
    # Inference: the same function; no dropout layer after the last (logit) layer.
    np.testing.assert_array_equal(dropped(x).numpy(), plain(x).numpy())
    assert len(dropped.dropout_layers) == 2
    # Training: half of each hidden activation dropped, survivors scaled by 2.
    hidden = dropped.dense_layers[0](x).numpy()
    kept = dropped.dropout_layers[0](hidden, training=True).numpy()
    active = hidden > 0
    zeroed = (kept[active] == 0).mean()
    assert 0.4 < zeroed < 0.6
    survivors = kept[active] != 0
    np.testing.assert_allclose(kept[active][survivors], 2 * hidden[active][survivors], rtol=1e-6)
    assert not np.allclose(dropped(x, training=True).numpy(), plain(x).numpy())
    assert MLP.from_config(dropped.get_config()).dropout == 0.5
    with pytest.raises(ValueError, match=r"MLP dropout must be in \[0, 1\), got 1.0"):
        MLP((4, 1), dropout=1.0)
