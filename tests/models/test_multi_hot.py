"""Multi-hot features: pooled lookups against numpy, the model's column layout, 0 numericals."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.data.feature_spec import COMBINERS as SPEC_COMBINERS
from models.data.feature_spec import PAD_ID
from models.dcnv2 import DCNv2
from models.dlrm import DLRM
from models.layers import EmbeddingTable
from models.layers.pooling import COMBINERS, pooled_lookup
from models.training.optimizers import SparseAdam, SparseSGD

IDS = np.array(
    [
        [1, 2, 2, PAD_ID],  # a repeated id inside a bag
        [PAD_ID, PAD_ID, PAD_ID, PAD_ID],  # an empty bag
        [0, 5, 3, 4],  # a full bag, id 0 included
        [6, PAD_ID, PAD_ID, PAD_ID],
    ],
    np.int32,
)


def _reference(rows: np.ndarray, ids: np.ndarray, combiner: str) -> np.ndarray:
    """Pure-numpy pooling: sum (or mean) of the rows of each bag's ids >= 0."""
    out = np.zeros((len(ids), rows.shape[1]), np.float64)
    for r, bag in enumerate(ids):
        valid = [int(i) for i in bag if i >= 0]
        for i in valid:
            out[r] += rows[i]
        if combiner == "mean" and valid:
            out[r] /= len(valid)
    return out


def test_combiners_agree_between_the_spec_and_the_layer():
    assert SPEC_COMBINERS == COMBINERS


@pytest.mark.parametrize("combiner", COMBINERS)
def test_pooled_lookup_matches_numpy_forward_and_gradient(combiner):
    table = EmbeddingTable(8, 3, seed=5)
    rows = table.embeddings.numpy().astype(np.float64)
    upstream = np.random.default_rng(0).normal(size=(len(IDS), 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        pooled = pooled_lookup(table, tf.constant(IDS), combiner)
        loss = tf.reduce_sum(pooled * upstream)
    np.testing.assert_allclose(pooled.numpy(), _reference(rows, IDS, combiner), rtol=1e-6)
    assert pooled.shape == (4, 3)
    np.testing.assert_array_equal(pooled.numpy()[1], 0.0)  # the empty bag

    (grad,) = tape.gradient(loss, [table.embeddings])
    assert isinstance(grad, tf.IndexedSlices)
    # One gradient row per valid id (8 of 16 slots), none for the padding.
    assert sorted(grad.indices.numpy().tolist()) == [0, 1, 2, 2, 3, 4, 5, 6]
    dense = tf.convert_to_tensor(grad).numpy()
    expected = np.zeros((8, 3))
    for r, bag in enumerate(IDS):
        valid = [int(i) for i in bag if i >= 0]
        for i in valid:
            expected[i] += upstream[r] / (len(valid) if combiner == "mean" else 1)
    np.testing.assert_allclose(dense, expected, rtol=1e-6, atol=1e-7)
    assert not dense[7].any()  # an id never looked up gets nothing


def test_pooled_lookup_refuses_bad_arguments():
    table = EmbeddingTable(8, 3, seed=5)
    with pytest.raises(ValueError, match="combiner must be one of"):
        pooled_lookup(table, tf.constant(IDS), "max")
    with pytest.raises(ValueError, match=r"ids of shape \[B, h\]"):
        pooled_lookup(table, tf.constant([1, 2]), "sum")


def test_padding_leaves_row_0_untouched_by_lazy_adam():
    """A padded slot must not reach the optimizer as a zero-gradient row 0."""
    table = EmbeddingTable(8, 3, seed=5)
    before = table.embeddings.numpy().copy()
    optimizer = SparseAdam(0.1)
    ids = tf.constant([[1, PAD_ID], [2, 2]], tf.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(pooled_lookup(table, ids, "sum"))
    optimizer.apply_gradients([(tape.gradient(loss, table.embeddings), table.embeddings)])
    after = table.embeddings.numpy()
    changed = sorted(np.flatnonzero((after != before).any(axis=1)).tolist())
    assert changed == [1, 2]


def test_duplicate_ids_in_a_bag_accumulate_in_the_sparse_update():
    table = EmbeddingTable(8, 2, seed=1)
    before = table.embeddings.numpy().copy()
    ids = tf.constant([[3, 3, 3], [3, PAD_ID, 4]], tf.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(pooled_lookup(table, ids, "sum"))
    SparseSGD(0.5).apply_gradients([(tape.gradient(loss, table.embeddings), table.embeddings)])
    step = before - table.embeddings.numpy()
    np.testing.assert_allclose(step[3], [2.0, 2.0], rtol=1e-6)  # 4 occurrences x 0.5
    np.testing.assert_allclose(step[4], [0.5, 0.5], rtol=1e-6)
    assert not np.delete(step, [3, 4], axis=0).any()


def _small(model_class, **kwargs):
    return model_class(
        [10, 20, 30],
        embedding_dim=4,
        bottom_mlp_dims=(8, 4),
        top_mlp_dims=(8, 1),
        seed=3,
        **kwargs,
    )


def test_model_pools_each_multi_hot_table_by_its_combiner():
    model = _small(DLRM, hotness=[1, 3, 2], combiners=["sum", "mean", "sum"])
    cat = np.array([[1, 2, 2, PAD_ID, 3, 4], [0, PAD_ID, PAD_ID, PAD_ID, PAD_ID, 29]], np.int32)
    vectors = model.lookup(tf.constant(cat), [0, 1, 2])
    rows = [t.embeddings.numpy().astype(np.float64) for t in model.tables]
    np.testing.assert_allclose(vectors[0].numpy(), rows[0][cat[:, 0]], rtol=1e-6)
    np.testing.assert_allclose(vectors[1].numpy(), _reference(rows[1], cat[:, 1:4], "mean"))
    np.testing.assert_allclose(vectors[2].numpy(), _reference(rows[2], cat[:, 4:], "sum"))
    # Column layout: a subset of the tables in any order reads its own columns.
    (only,) = model.lookup(tf.constant(cat[:, 4:]), [2])
    np.testing.assert_allclose(only.numpy(), vectors[2].numpy())
    with pytest.raises(ValueError, match=r"categorical has 3 columns but tables \[0, 1, 2\]"):
        model.lookup(tf.constant(cat[:, :3]), [0, 1, 2])
    assert model.get_config()["hotness"] == [1, 3, 2]
    assert DLRM.from_config(model.get_config()).combiners == ("sum", "mean", "sum")


def test_model_refuses_bad_hotness_and_combiners():
    with pytest.raises(ValueError, match="3 tables but 2 hotness values"):
        _small(DLRM, hotness=[1, 2])
    with pytest.raises(ValueError, match="combiners must be 3 of"):
        _small(DLRM, hotness=[1, 2, 1], combiners="max")


@pytest.mark.parametrize("model_class", [DLRM, DCNv2])
def test_zero_numerical_features_means_no_bottom_mlp(model_class):
    model = _small(model_class, num_numerical_features=0)
    assert model.bottom_mlp is None
    cat = tf.constant([[1, 2, 3], [0, 0, 0], [9, 19, 29]], tf.int32)
    numerical = tf.zeros([3, 0])
    with tf.GradientTape() as tape:
        logits = model({"numerical": numerical, "categorical": cat})
    assert logits.shape == (3, 1)
    grads = tape.gradient(logits, model.dense_variables)
    assert all(g is not None for g in grads)
    if model_class is DLRM:
        # The interaction is the 3 pairwise dots of the embeddings alone.
        vectors = np.stack([v.numpy() for v in model.lookup(cat, [0, 1, 2])], axis=1)
        dots = np.einsum("bid,bjd->bij", vectors, vectors)
        expected = np.stack([dots[:, 1, 0], dots[:, 2, 0], dots[:, 2, 1]], axis=1)
        got = model.interaction(None, list(model.lookup(cat, [0, 1, 2])))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    rebuilt = model_class.from_config(model.get_config())
    assert rebuilt.num_numerical_features == 0 and rebuilt.bottom_mlp is None
