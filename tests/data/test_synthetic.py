import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from models.data.criteo import BENCH_CARDINALITIES
from models.data.float16 import round_to_float16
from models.data.synthetic import SyntheticDataset
from models.data.synthetic_labels import synthetic_logits

CARDINALITIES = (1, 3, 50, 1000, 200_000)


def _dataset(**kwargs):
    arguments = {
        "global_batch_size": 7,
        "num_batches": 3,
        "cardinalities": CARDINALITIES,
        "num_numerical": 4,
        "seed": 11,
        **kwargs,
    }
    return SyntheticDataset(**arguments)


def _collect(dataset, **kwargs):
    return [
        (features["numerical"].numpy(), features["categorical"].numpy(), labels.numpy())
        for features, labels in dataset.as_dataset(**kwargs)
    ]


@pytest.mark.parametrize("world", [2, 3])
def test_global_batches_do_not_depend_on_world_size(world):
    single = _collect(_dataset())
    table_ids = [4, 1]
    per_rank = [
        _collect(_dataset(rank=rank, world_size=world, table_ids=table_ids))
        for rank in range(world)
    ]
    for index, (numerical, categorical, labels) in enumerate(single):
        np.testing.assert_array_equal(
            np.concatenate([batches[index][0] for batches in per_rank]), numerical
        )
        np.testing.assert_array_equal(
            np.concatenate([batches[index][2] for batches in per_rank]), labels
        )
        for batches in per_rank:
            np.testing.assert_array_equal(batches[index][1], categorical[:, table_ids])
    sizes = [len(batches[0][2]) for batches in per_rank]
    assert sizes == {2: [4, 3], 3: [3, 2, 2]}[world]


def test_rank_slices_of_multi_hot_tables_tile_the_global_batch():
    hotness = (2, 1, 3, 1, 4)

    def dataset(**kwargs):
        return SyntheticDataset(
            5000, 2, CARDINALITIES, num_numerical=3, seed=2, hotness=hotness, **kwargs
        )

    numerical, categorical, labels = dataset().global_batch(1, epoch=3)
    assert categorical.shape == (5000, 11)
    columns = {0: [0, 1], 1: [2], 2: [3, 4, 5], 3: [6], 4: [7, 8, 9, 10]}
    placement = [[4, 0], [2], [1, 3]]  # each rank's tables, in its own order
    parts = []
    for rank, tables in enumerate(placement):
        data = dataset(rank=rank, world_size=3, table_ids=tables)
        (features, batch_labels), *_ = data.as_dataset(epoch=3, start_batch=1)
        parts.append((features["numerical"].numpy(), batch_labels.numpy()))
        want = categorical[:, [c for t in tables for c in columns[t]]]
        np.testing.assert_array_equal(features["categorical"].numpy(), want)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), numerical)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), labels)
    assert [len(p[1]) for p in parts] == [1667, 1667, 1666]


def test_element_structure_and_static_shapes():
    dataset = _dataset(rank=1, world_size=2, table_ids=[0, 3, 2])
    features_spec, labels_spec = dataset.element_spec
    assert features_spec["numerical"].shape.as_list() == [3, 4]
    assert features_spec["categorical"].shape.as_list() == [7, 3]
    assert labels_spec.shape.as_list() == [3, 1]
    features, labels = next(iter(dataset.as_dataset()))
    assert features["numerical"].dtype.name == "float32"
    assert features["categorical"].dtype.name == "int32"
    assert labels.dtype.name == "float32"
    assert len(dataset) == 3


def test_deterministic_from_seed_and_distinct_per_batch_and_epoch():
    first = _dataset().read_batch(1)
    again = _dataset().read_batch(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_dataset(seed=12).read_batch(1)[0], first[0])
    assert not np.array_equal(_dataset().read_batch(2)[0], first[0])
    assert not np.array_equal(_dataset().read_batch(1, epoch=1)[0], first[0])


@pytest.mark.parametrize("view", [{}, {"rank": 1, "world_size": 2, "table_ids": [3, 0]}])
def test_dataset_equals_read_batch_and_global_batch_and_resumes(view):
    dataset = _dataset(num_batches=4, **view)
    batches = _collect(dataset, epoch=2)
    assert len(batches) == 4
    rows = slice(4, 7) if view else slice(0, 7)
    columns = view.get("table_ids", list(range(len(CARDINALITIES))))
    for index, batch in enumerate(batches):
        for a, b in zip(batch, dataset.read_batch(index, epoch=2), strict=True):
            np.testing.assert_array_equal(a, b)
        numerical, categorical, labels = dataset.global_batch(index, epoch=2)
        np.testing.assert_array_equal(batch[0], numerical[rows])
        np.testing.assert_array_equal(batch[1], categorical[:, columns])
        np.testing.assert_array_equal(batch[2], labels[rows])
    for start in (1, 3):
        resumed = _collect(dataset, epoch=2, start_batch=start)
        assert len(resumed) == 4 - start
        for got, want in zip(resumed, batches[start:], strict=True):
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
    assert _collect(dataset, epoch=2, start_batch=4) == []
    with pytest.raises(IndexError, match=r"batch 4 out of range \[0, 4\)"):
        dataset.read_batch(4)


def test_numericals_follow_the_log1p_of_counts_law():
    numerical, _, _ = SyntheticDataset(50_000, 1, (), num_numerical=13, seed=4).global_batch(0)
    # Values the binary dataset's float16 can hold, from log1p(8 * Exp(1)).
    np.testing.assert_array_equal(numerical.astype(np.float16).astype(np.float32), numerical)
    assert numerical.min() >= 0 and numerical.max() < 6
    reference = np.log1p(8 * np.random.default_rng(0).standard_exponential(2_000_000))
    assert abs(numerical.mean() - reference.mean()) < 0.01  # 1.84
    np.testing.assert_allclose(
        np.quantile(numerical, [0.1, 0.5, 0.9]), np.quantile(reference, [0.1, 0.5, 0.9]), atol=0.02
    )
    assert abs(np.corrcoef(numerical[:, 0], numerical[:, 1])[0, 1]) < 0.02


def test_ids_follow_a_power_law_within_the_tables():
    dataset = SyntheticDataset(20_000, 1, CARDINALITIES, seed=3)
    _, categorical, _ = dataset.read_batch(0)
    assert categorical.min() == 0
    assert (categorical.max(axis=0) < np.asarray(CARDINALITIES)).all()
    assert (categorical[:, 0] == 0).all()  # a one-row table
    counts = np.bincount(categorical[:, 3], minlength=1000)
    # Log-uniform law: P(id = k) ~ log((k + 2) / (k + 1)) / log(1000).
    expected = np.log(np.arange(2, 1002) / np.arange(1, 1001)) / np.log(1000) * 20_000
    np.testing.assert_allclose(counts[:4], expected[:4], rtol=0.15)
    assert counts[:10].sum() > 0.3 * 20_000  # heavy head
    assert (counts[500:] > 0).sum() > 200  # long tail reached


def test_labels_are_drawn_from_the_label_model():
    # Criteo's 26 tables: about a quarter of positive labels, and the logits'
    # own AUC (the best any model can reach) about 0.78.
    numerical, categorical, labels = SyntheticDataset(
        60_000, 1, BENCH_CARDINALITIES, seed=8
    ).global_batch(0)
    logits = synthetic_logits(numerical, categorical)
    assert 0.24 < labels.mean() < 0.34  # 0.29 measured
    assert 0.76 < roc_auc_score(labels[:, 0], logits) < 0.80  # 0.78 measured
    # Calibrated: the positive rate of each decile of logits is its mean sigmoid.
    probability = 1 / (1 + np.exp(-logits))
    deciles = np.array_split(np.argsort(logits), 10)
    rates = [labels[rows, 0].mean() for rows in deciles]
    expected = [probability[rows].mean() for rows in deciles]
    np.testing.assert_allclose(rates, expected, atol=0.02)


def test_multi_hot_labels_use_every_id_of_a_bag():
    hotness = (1, 4, 2)
    data = SyntheticDataset(40_000, 1, (50, 1000, 300), num_numerical=2, seed=9, hotness=hotness)
    numerical, categorical, labels = data.global_batch(0)
    auc = roc_auc_score(labels[:, 0], synthetic_logits(numerical, categorical, hotness))
    assert auc > 0.76  # 0.78 measured
    # With the bags' other ids shuffled across rows, the logits explain less.
    shuffled = categorical.copy()
    rng = np.random.default_rng(0)
    for column in (2, 3, 4, 6):
        shuffled[:, column] = rng.permutation(shuffled[:, column])
    assert roc_auc_score(labels[:, 0], synthetic_logits(numerical, shuffled, hotness)) < auc - 0.02


def test_labels_are_learnable():
    cardinalities = (5, 100, 1000, 10_000)
    train = SyntheticDataset(20_000, 1, cardinalities, seed=5).read_batch(0)
    test = SyntheticDataset(20_000, 1, cardinalities, seed=6).read_batch(0)
    numerical, categorical, labels = test
    assert 0.12 < labels.mean() < 0.45
    assert roc_auc_score(labels[:, 0], synthetic_logits(numerical, categorical)) > 0.75

    def features(batch):
        # What an embedding table of width 1 would learn: the mean label per id.
        return np.concatenate(
            [batch[0], np.stack([means[t][batch[1][:, t]] for t in range(4)], axis=1)], axis=1
        )

    means = []
    for table, rows in enumerate(cardinalities):
        sums = np.bincount(train[1][:, table], train[2][:, 0], minlength=rows)
        counts = np.bincount(train[1][:, table], minlength=rows)
        means.append((sums + train[2].mean()) / (counts + 1))
    model = LogisticRegression(solver="liblinear").fit(features(train), train[2][:, 0])
    auc = roc_auc_score(labels[:, 0], model.predict_proba(features(test))[:, 1])
    assert auc > 0.65  # 0.69 measured; the logits' own AUC (Bayes bound) is 0.77


def test_constant_mode_repeats_one_batch():
    dataset = _dataset(mode="constant", num_batches=4, rank=1, world_size=2)
    batches = _collect(dataset)
    assert len(batches) == 4
    for batch in batches[1:]:
        for a, b in zip(batch, batches[0], strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(_collect(dataset, start_batch=3)) == 1
    assert _collect(_dataset(mode="constant", num_batches=0)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "zipf"}, "mode must be one of"),
        ({"cardinalities": (3, 0)}, r"offending: \[\(1, 0\)\]"),
        ({"table_ids": [5]}, r"table_ids must be unique and in \[0, 5\), got \[5\]"),
        ({"rank": 3, "world_size": 3}, r"rank must be in \[0, 3\)"),
        ({"global_batch_size": 0}, "need global_batch_size >= 1"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*63\), got -1"),
        ({"seed": 1 << 63}, r"seed must be in \[0, 2\*\*63\), got 9223372036854775808"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _dataset(**kwargs)


def test_large_batches_are_not_periodic():
    # No row pattern repeats within a batch (e.g. a per-block stream reused).
    _, categorical, _ = SyntheticDataset(20_000, 1, CARDINALITIES, seed=2).global_batch(0)
    large = categorical[:, 4]
    assert len(np.unique(large)) > 5000
    for shift in (1024, 4096, 8192):
        assert (large[shift:] == large[:-shift]).mean() < 0.05


def test_round_to_float16_equals_numpy_float16():
    rng = np.random.default_rng(3)
    # Random float32 bit patterns over float16's whole finite range, its
    # subnormals, exact ties, and the boundaries between binades.
    magnitudes = np.concatenate(
        [
            rng.uniform(0, 65504, 100_000),
            rng.uniform(0, 2**-14, 100_000),
            np.exp(rng.uniform(np.log(2**-26), np.log(65504), 100_000)),
            (np.arange(1, 4096) + 0.5) * 2.0**-24,  # ties between subnormals
            (1 + (np.arange(1024) + 0.5) / 1024) * 2.0,  # ties between normals
            [0, 2**-25, 2**-14, 2**-14 * (1 - 2**-12), 1, 2 - 2**-11, 65504],
        ]
    ).astype(np.float32)
    values = np.concatenate([magnitudes, -magnitudes])
    want = values.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(round_to_float16(tf.constant(values)).numpy(), want)
