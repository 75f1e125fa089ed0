"""DCNv2 against an independent numpy forward pass from the same weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.dcnv2 import DCNv2
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


def _numpy_dcnv2(model, inputs):
    """Row by row: x0 = [bottom, e_0 .. e_F-1], cross layers, deep MLP."""
    tables = [v.numpy().astype(np.float64) for v in model.embedding_variables]
    bottom_w = [v.numpy().astype(np.float64) for v in model.bottom_mlp.weights]
    top_w = [v.numpy().astype(np.float64) for v in model.top_mlp.weights]
    cross = model.interaction.cross
    layers = []
    for down, up in zip(cross.down_layers, cross.up_layers, strict=True):
        matrix = up.kernel.numpy().astype(np.float64)
        if down is not None:
            matrix = down.kernel.numpy().astype(np.float64) @ matrix
        layers.append((matrix, up.bias.numpy().astype(np.float64)))
    bottom = _numpy_mlp(inputs["numerical"].astype(np.float64), bottom_w, last_relu=True)
    logits = []
    for r in range(bottom.shape[0]):
        x0 = np.concatenate(
            [bottom[r]] + [t[inputs["categorical"][r, k]] for k, t in enumerate(tables)]
        )
        x = x0
        for matrix, bias in layers:
            x = x0 * (x @ matrix + bias) + x
        logits.append(_numpy_mlp(x[None], top_w, last_relu=False)[0])
    return np.array(logits)


@pytest.mark.parametrize("projection_dim", [None, 3])
def test_forward_matches_numpy_reference(projection_dim):
    keras.utils.set_random_seed(0)
    model = DCNv2(CARDINALITIES, cross_layer_projection_dim=projection_dim, **DIMS)
    # Non-zero cross biases, so that they matter in the check.
    rng = np.random.default_rng(1)
    for up in model.interaction.cross.up_layers:
        up.bias.assign(rng.normal(size=up.bias.shape).astype(np.float32))
    inputs = _inputs()
    logits = model(inputs)
    assert logits.shape == (6, 1) and logits.dtype == tf.float32
    np.testing.assert_allclose(logits.numpy(), _numpy_dcnv2(model, inputs), rtol=1e-4, atol=1e-5)


def test_cross_network_sizes_and_dense_variables():
    model = DCNv2(CARDINALITIES, num_cross_layers=2, cross_layer_projection_dim=3, **DIMS)
    width = (len(CARDINALITIES) + 1) * 4
    cross = model.interaction.cross
    assert cross.input_dim == width and len(cross.up_layers) == 2
    assert model.top_mlp.dense_layers[0].kernel.shape == (width, 8)
    dense_ids = {id(v) for v in model.dense_variables}
    assert all(id(v) in dense_ids for v in model.interaction.trainable_variables)
    assert len(model.dense_variables) == 4 + 2 * 3 + 6
    assert not dense_ids & {id(v) for v in model.embedding_variables}


def test_mixed_precision_keeps_tables_and_logits_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = DCNv2(CARDINALITIES, cross_layer_projection_dim=2, **DIMS)
    inputs = _inputs()
    assert model.interaction(tf.ones((2, 4)), tf.ones((2, 4, 4))).dtype == tf.bfloat16
    assert model(inputs).dtype == tf.float32
    assert all(v.dtype == "float32" for v in model.embedding_variables)
    assert all(v.dtype == "float32" for v in model.interaction.weights)


def test_config_round_trip_keras_file_and_model_type(tmp_path):
    model = DCNv2(
        CARDINALITIES, num_cross_layers=2, cross_layer_projection_dim=None, name="d", **DIMS
    )
    config = model.get_config()
    assert config["model_type"] == "dcnv2"
    assert (config["num_cross_layers"], config["cross_layer_projection_dim"]) == (2, None)
    clone = DCNv2.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    inputs = _inputs(seed=4)
    np.testing.assert_array_equal(clone(inputs).numpy(), model(inputs).numpy())
    path = str(tmp_path / "dcnv2.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, DCNv2) and loaded.get_config() == config
    np.testing.assert_array_equal(loaded(inputs).numpy(), model(inputs).numpy())
    with pytest.raises(ValueError, match="a 'dcnv2' model config cannot build a DLRM"):
        DLRM.from_config(config)
    assert DLRM(CARDINALITIES, **DIMS).get_config()["model_type"] == "dlrm"


def test_pieces_and_partial_model_as_dlrm():
    model = DCNv2(CARDINALITIES, cross_layer_projection_dim=2, seed=5, **DIMS)
    inputs = _inputs(seed=2)
    vectors = model.lookup(tf.constant(inputs["categorical"]), range(4))
    numerical = tf.constant(inputs["numerical"])
    stacked = model.dense_forward(numerical, tf.stack(vectors, 1)).numpy()
    np.testing.assert_array_equal(model.dense_forward(numerical, vectors).numpy(), stacked)
    blocks = [tf.stack(vectors[:3], 1), vectors[3]]
    np.testing.assert_array_equal(model.dense_forward(numerical, blocks).numpy(), stacked)
    part = DCNv2(CARDINALITIES, cross_layer_projection_dim=2, seed=5, table_ids=[2], **DIMS)
    assert part.held_tables == (2,)
    np.testing.assert_array_equal(
        part.embedding_variables[2].numpy(), model.embedding_variables[2].numpy()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_cross_layers=0), r"DCNv2 num_cross_layers must be positive integers, got \[0\]"),
        (dict(cross_layer_projection_dim=-1), "DCNv2 cross_layer_projection_dim must be positive"),
        (dict(bottom_mlp_dims=(8, 5)), r"\(5\) must equal embedding_dim \(4\)"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DCNv2(CARDINALITIES, **{**DIMS, **kwargs})


def test_build_model_follows_the_model_type():
    from types import SimpleNamespace

    from models.model_types import build_model

    config = SimpleNamespace(
        model_type="dcnv2",
        embedding_dim=4,
        bottom_mlp_dims=(6, 4),
        top_mlp_dims=(8, 1),
        num_numerical_features=3,
        num_cross_layers=2,
        cross_layer_projection_dim=0,  # the flag's "full rank"
    )
    model = build_model(config, CARDINALITIES, table_ids=[1, 2], seed=3)
    assert isinstance(model, DCNv2) and model.held_tables == (1, 2) and model.seed == 3
    assert (model.num_cross_layers, model.cross_layer_projection_dim) == (2, None)
    assert model.interaction.cross.down_layers == [None, None]
    low = build_model(_replaced(config, cross_layer_projection_dim=5), CARDINALITIES)
    assert low.interaction.cross.down_layers[0].kernel.shape == (20, 5)
    dlrm = build_model(_replaced(config, model_type="dlrm"), CARDINALITIES)
    assert type(dlrm) is DLRM and dlrm.top_mlp.dense_layers[0].kernel.shape == (4 + 10, 8)
    with pytest.raises(ValueError, match="model_type must be one of"):
        build_model(_replaced(config, model_type="dcn"), CARDINALITIES)


def _replaced(namespace, **changes):
    from types import SimpleNamespace

    return SimpleNamespace(**{**vars(namespace), **changes})
