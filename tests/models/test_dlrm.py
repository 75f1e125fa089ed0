"""The whole DLRM against an independent numpy forward pass from the same weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.dlrm import DLRM

CARDINALITIES = (5, 3, 7, 4)
DIMS = dict(
    embedding_dim=4, bottom_mlp_dims=(6, 4), top_mlp_dims=(8, 3, 1), num_numerical_features=3
)


@pytest.fixture(autouse=True)
def _float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _inputs(batch=6, seed=0):
    rng = np.random.default_rng(seed)
    categorical = np.stack([rng.integers(0, n, size=batch) for n in CARDINALITIES], 1)
    return {
        "numerical": rng.normal(size=(batch, 3)).astype(np.float32),
        "categorical": categorical.astype(np.int32),
    }


def _numpy_mlp(x, weights, last_relu):
    for i in range(0, len(weights), 2):
        x = x @ weights[i] + weights[i + 1]
        if i + 2 < len(weights) or last_relu:
            x = np.maximum(x, 0.0)
    return x


def _numpy_dlrm(model, inputs):
    """Independent forward pass: loops over pairs instead of a Gram matrix."""
    tables = [v.numpy().astype(np.float64) for v in model.embedding_variables]
    bottom_w = [v.numpy().astype(np.float64) for v in model.bottom_mlp.weights]
    top_w = [v.numpy().astype(np.float64) for v in model.top_mlp.weights]
    bottom = _numpy_mlp(inputs["numerical"].astype(np.float64), bottom_w, last_relu=True)
    logits = []
    for r in range(bottom.shape[0]):
        vectors = [bottom[r]] + [t[inputs["categorical"][r, k]] for k, t in enumerate(tables)]
        pairs = [vectors[i] @ vectors[j] for i in range(len(vectors)) for j in range(i)]
        top_in = np.concatenate([bottom[r], pairs])[None]
        logits.append(_numpy_mlp(top_in, top_w, last_relu=False)[0])
    return np.array(logits)


def test_forward_matches_numpy_reference():
    keras.utils.set_random_seed(0)
    model = DLRM(CARDINALITIES, **DIMS)
    inputs = _inputs()
    logits = model(inputs)
    assert logits.shape == (6, 1)
    assert logits.dtype == tf.float32
    np.testing.assert_allclose(logits.numpy(), _numpy_dlrm(model, inputs), rtol=1e-5, atol=1e-6)


def test_lookup_and_dense_forward_compose_to_call():
    model = DLRM(CARDINALITIES, **DIMS)
    inputs = _inputs(seed=1)
    subset = [2, 0]
    vectors = model.lookup(tf.constant(inputs["categorical"][:, subset]), subset)
    assert len(vectors) == 2
    for vec, t in zip(vectors, subset, strict=True):
        assert vec.dtype == tf.float32
        want = model.tables[t].embeddings.numpy()[inputs["categorical"][:, t]]
        np.testing.assert_array_equal(vec.numpy(), want)

    # a rank that owns no table (more ranks than tables) looks up nothing
    assert model.lookup(tf.zeros((6, 0), tf.int32), []) == []

    all_vectors = model.lookup(tf.constant(inputs["categorical"]), range(4))
    # dense_forward on a slice of the batch gives that slice of call()
    sliced = model.dense_forward(
        tf.constant(inputs["numerical"][2:5]), tf.stack(all_vectors, 1)[2:5]
    )
    np.testing.assert_allclose(sliced.numpy(), model(inputs).numpy()[2:5], rtol=1e-6)


def test_default_dims_give_479_interaction_features_and_variable_split():
    model = DLRM([3] * 26)
    assert model.top_mlp.dense_layers[0].kernel.shape == (479, 1024)
    assert len(model.embedding_variables) == 26
    assert len(model.dense_variables) == 2 * (3 + 5)
    dense_ids = {id(v) for v in model.dense_variables}
    emb_ids = {id(v) for v in model.embedding_variables}
    assert not dense_ids & emb_ids
    assert dense_ids | emb_ids == {id(v) for v in model.trainable_variables}


def test_embedding_gradients_are_sparse():
    model = DLRM(CARDINALITIES, **DIMS)
    inputs = _inputs()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(inputs))
    grads = tape.gradient(loss, model.embedding_variables)
    assert all(isinstance(g, tf.IndexedSlices) for g in grads)


def test_mixed_precision_keeps_tables_and_logits_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = DLRM(CARDINALITIES, **DIMS)
    inputs = _inputs()
    logits = model(inputs)
    assert logits.dtype == tf.float32
    assert all(v.dtype == "float32" for v in model.embedding_variables)
    assert model.bottom_mlp.dense_layers[0].compute_dtype == "bfloat16"
    vectors = model.lookup(tf.constant(inputs["categorical"]), range(4))
    assert all(v.dtype == tf.float32 for v in vectors)
    # bf16 has ~3 significant digits: close to the float64 reference, not equal
    np.testing.assert_allclose(logits.numpy(), _numpy_dlrm(model, inputs), rtol=0.1, atol=0.05)


def test_config_round_trip_and_weights_transfer():
    model = DLRM(CARDINALITIES, name="dlrm_test", **DIMS)
    clone = DLRM.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    inputs = _inputs()
    np.testing.assert_array_equal(clone(inputs).numpy(), model(inputs).numpy())
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert restored.get_config() == model.get_config()


def test_keras_file_save_and_load(tmp_path):
    model = DLRM(CARDINALITIES, **DIMS)
    path = str(tmp_path / "dlrm.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, DLRM)
    inputs = _inputs(seed=3)
    np.testing.assert_array_equal(loaded(inputs).numpy(), model(inputs).numpy())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(cardinalities=[]), "cardinalities must not be empty"),
        (dict(cardinalities=[3, 0]), r"cardinalities must be positive integers, got \[0\]"),
        (dict(cardinalities=[3], bottom_mlp_dims=(8, 5)), r"\(5\) must equal embedding_dim \(4\)"),
        (dict(cardinalities=[3], top_mlp_dims=(8, 2)), "last top_mlp_dims entry must be 1"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    args = {**DIMS, **kwargs}
    with pytest.raises(ValueError, match=message):
        DLRM(**args)


def test_input_shape_errors_name_the_values():
    model = DLRM(CARDINALITIES, **DIMS)
    with pytest.raises(
        ValueError, match=r"2 columns but tables \[0, 1, 2\] \(hotness \[1, 1, 1\]\) have 3"
    ):
        model.lookup(tf.zeros((2, 2), tf.int32), [0, 1, 2])
    with pytest.raises(ValueError, match=r"table ids \[4\] out of range"):
        model.lookup(tf.zeros((2, 1), tf.int32), [4])
    with pytest.raises(ValueError, match="3 numerical features expected"):
        model.dense_forward(tf.zeros((2, 5)), tf.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="must hold 4 tables"):
        model.dense_forward(tf.zeros((2, 3)), tf.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"lack \['numerical'\]"):
        model({"categorical": tf.zeros((2, 4), tf.int32)})


def test_partial_model_holds_only_its_tables_with_world_independent_init():
    cards = (5, 7, 9, 11)
    full = DLRM(cards, embedding_dim=4, bottom_mlp_dims=(8, 4), top_mlp_dims=(6, 1), seed=3)
    part = DLRM(
        cards,
        embedding_dim=4,
        bottom_mlp_dims=(8, 4),
        top_mlp_dims=(6, 1),
        table_ids=[3, 1],
        seed=3,
    )
    assert part.held_tables == (1, 3) and part.num_tables == 4
    assert [t is None for t in part.tables] == [True, False, True, False]
    assert [v is None for v in part.embedding_variables] == [True, False, True, False]
    # Only held tables are weights of the model: memory is split over ranks.
    table_weights = [w for w in part.weights if "embedding" in w.path]
    assert sorted(tuple(w.shape) for w in table_weights) == [(7, 4), (11, 4)]
    # A table starts with the same rows whichever other tables are held.
    for t in (1, 3):
        np.testing.assert_array_equal(
            part.embedding_variables[t].numpy(), full.embedding_variables[t].numpy()
        )
    ids = tf.constant([[1, 2], [0, 10]], tf.int32)
    got = part.lookup(ids, [1, 3])
    np.testing.assert_array_equal(got[1].numpy(), full.lookup(ids, [1, 3])[1].numpy())
    with pytest.raises(ValueError, match=r"tables \[0\] are not held by this model"):
        part.lookup(ids, [0, 1])
    clone = DLRM.from_config(part.get_config())
    assert clone.held_tables == (1, 3) and clone.seed == 3
    with pytest.raises(ValueError, match=r"table_ids \[4\] out of range for 4 tables"):
        DLRM(cards, embedding_dim=4, bottom_mlp_dims=(8, 4), top_mlp_dims=(6, 1), table_ids=[4])


def test_dense_forward_takes_lookups_as_pieces():
    model = DLRM(CARDINALITIES, **DIMS)
    inputs = _inputs(seed=2)
    vectors = model.lookup(tf.constant(inputs["categorical"]), range(4))
    numerical = tf.constant(inputs["numerical"])
    stacked = model.dense_forward(numerical, tf.stack(vectors, 1)).numpy()
    np.testing.assert_array_equal(model.dense_forward(numerical, vectors).numpy(), stacked)
    blocks = [tf.stack(vectors[:3], 1), vectors[3]]
    np.testing.assert_array_equal(model.dense_forward(numerical, blocks).numpy(), stacked)
    with pytest.raises(ValueError, match="must hold 4 tables"):
        model.dense_forward(numerical, vectors[:3])


def test_a_linear_part_adds_each_ids_weight_to_the_logit():
    """--linear: the tables' last column is a per-id weight outside the interaction."""
    model = DLRM(CARDINALITIES, seed=3, linear=True, **DIMS)
    assert model.table_width == 5 and all(v.shape[1] == 5 for v in model.embedding_variables)
    # The same model without the linear part, from the first D columns of the tables.
    plain = DLRM(CARDINALITIES, seed=3, **DIMS)
    for source, target in zip(model.embedding_variables, plain.embedding_variables, strict=True):
        target.assign(source[:, :4])
    for source, target in zip(model.dense_variables, plain.dense_variables, strict=True):
        target.assign(source)
    inputs = _inputs(batch=7, seed=2)
    weights = sum(
        model.embedding_variables[t].numpy()[inputs["categorical"][:, t], 4]
        for t in range(len(CARDINALITIES))
    )
    expected = _numpy_dlrm(plain, inputs) + weights[:, None]
    np.testing.assert_allclose(model(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)
    # The weights move the logit one for one: they are not seen by the interaction.
    model.embedding_variables[0].assign_add(tf.one_hot([4] * 5, 5) * 0.25)
    np.testing.assert_allclose(model(inputs).numpy(), expected + 0.25, rtol=1e-5, atol=1e-6)
    rebuilt = DLRM.from_config(model.get_config())
    assert rebuilt.linear and "linear" not in plain.get_config()
