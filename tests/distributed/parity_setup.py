"""A tiny DLRM, its data and one SGD step, shared by the parity runs.

Used in-process by the world-size-1 tests and under ``horovodrun`` by
``hvd_program.py``, so both sides build exactly the same thing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.data.slicing import batch_slice
from models.distributed.comm import Communicator
from models.distributed.hybrid import HybridParallel
from models.distributed.placement import Placement, Shard, embedding_table_bytes, plan_placement
from models.dlrm import DLRM
from models.training.optimizers import make_optimizers

CARDINALITIES = (7, 11, 5, 13, 3)
DIM = 4
NUMERICAL = 3
# Global batch sizes: the 13-row batches split 7/6 on two ranks (uneven slices).
TRAIN_BATCHES = (16, 16, 13, 16)
EVAL_BATCHES = (16, 9)
GLOBAL_BATCH = 16
LEARNING_RATE = 0.5
# make_optimizers keywords of the regularised runs (strong enough to change every result).
REGULARISATION = {"embedding_l2": 0.1, "embedding_weight_decay": 0.4, "dense_weight_decay": 0.2}
# The multi-hot variant: ids per row of each table (padded bags) and their pooling.
MULTI_HOT = (1, 3, 1, 2, 4)
MULTI_HOT_COMBINERS = ("sum", "mean", "sum", "sum", "mean")


def build_model(
    seed: int = 7,
    table_ids: tuple[int, ...] | None = None,
    row_ranges: dict[int, tuple[int, int]] | None = None,
    hotness: tuple[int, ...] | None = None,
    linear: bool = False,
) -> DLRM:
    """The DLRM with weights drawn from numpy, identical in every process.

    With ``table_ids``/``row_ranges`` (a rank of a model-parallel job), only
    those tables, or rows of them, are built; they get the rows the whole
    model would have. With ``hotness`` (:data:`MULTI_HOT`) the tables of
    hotness > 1 are multi-hot, pooled by :data:`MULTI_HOT_COMBINERS`. With
    ``linear`` the model has a linear part (tables ``DIM + 1`` wide).
    """
    model = DLRM(
        CARDINALITIES,
        embedding_dim=DIM,
        bottom_mlp_dims=(8, DIM),
        top_mlp_dims=(8, 1),
        num_numerical_features=NUMERICAL,
        table_ids=table_ids,
        row_ranges=row_ranges,
        hotness=hotness,
        combiners=MULTI_HOT_COMBINERS if hotness else "sum",
        linear=linear,
    )
    rng = np.random.default_rng(seed)
    for table, variable in enumerate(model.embedding_variables):
        shape = (CARDINALITIES[table], model.table_width)
        full = rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)
        if variable is not None:
            start, end = (row_ranges or {}).get(table, (0, CARDINALITIES[table]))
            variable.assign(full[start:end])
    for variable in model.dense_variables:
        variable.assign(rng.uniform(-0.5, 0.5, size=variable.shape).astype(np.float32))
    return model


def build_rank_model(
    placement: Placement, rank: int, hotness: tuple[int, ...] | None = None, linear: bool = False
) -> DLRM:
    """:func:`build_model` holding what ``placement`` gives ``rank``."""
    return build_model(
        table_ids=placement.tables_per_rank[rank],
        row_ranges=placement.row_ranges(rank),
        hotness=hotness,
        linear=linear,
    )


def make_batches(
    sizes: tuple[int, ...], seed: int, hotness: tuple[int, ...] | None = None
) -> list[tuple[np.ndarray, ...]]:
    """Global batches ``(numerical [B, N], categorical [B, C], labels [B, 1])``.

    With ``hotness``, table t has ``hotness[t]`` columns: bags of 0 to
    ``hotness[t]`` ids (repeats included), padded with -1.
    """
    if hotness:
        return _multi_hot_batches(sizes, seed, hotness)
    rng = np.random.default_rng(seed)
    batches = []
    for rows in sizes:
        numerical = rng.normal(size=(rows, NUMERICAL)).astype(np.float32)
        categorical = np.stack(
            [rng.integers(0, card, size=rows) for card in CARDINALITIES], axis=1
        ).astype(np.int32)
        # Duplicates and the rows on both sides of the row boundaries of
        # split_placement (table 0 at row 4, table 3 at row 6), in both ranks' slices.
        for start in (0, rows // 2) if rows >= 8 else ():
            categorical[start : start + 4, 0] = [3, 4, 4, 3]
            categorical[start : start + 4, 3] = [5, 6, 12, 5]
        labels = ((numerical[:, :1] + (categorical[:, :1] % 2)) > 0.5).astype(np.float32)
        batches.append((numerical, categorical, labels))
    return batches


def _multi_hot_batches(
    sizes: tuple[int, ...], seed: int, hotness: tuple[int, ...]
) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    batches = []
    for rows in sizes:
        numerical = rng.normal(size=(rows, NUMERICAL)).astype(np.float32)
        columns = []
        for card, h in zip(CARDINALITIES, hotness, strict=True):
            # Few distinct ids: repeats inside a bag and across the batch.
            ids = rng.integers(0, min(card, 4), size=(rows, h))
            if h > 1:
                ids[np.arange(h) >= rng.integers(0, h + 1, rows)[:, None]] = -1
            columns.append(ids)
        # Bags with ids on both sides of the row boundaries of
        # split_multi_hot_placement (table 0 at row 4, table 1 at row 5, table 3
        # at row 6), a repeated id and an empty bag, in both ranks' slices.
        for start in (0, rows // 2) if rows >= 8 else ():
            columns[0][start : start + 4] = [[3], [4], [4], [3]]
            columns[1][start : start + 4] = [[4, 5, 5], [5, -1, 4], [-1, -1, -1], [3, 0, -1]]
            columns[3][start : start + 4] = [[5, 6], [12, -1], [-1, -1], [6, 6]]
        categorical = np.concatenate(columns, axis=1).astype(np.int32)
        labels = ((numerical[:, :1] + (categorical[:, 1:2] % 2)) > 0.5).astype(np.float32)
        batches.append((numerical, categorical, labels))
    return batches


def rank_view(batch: tuple[np.ndarray, ...], hp: HybridParallel) -> tuple[tf.Tensor, ...]:
    """This rank's input element: its slice of numericals/labels, its columns of ids."""
    numerical, categorical, labels = batch
    start, size = batch_slice(len(labels), hp.comm.rank, hp.comm.size)
    hotness = hp.model.hotness
    first = np.cumsum([0, *hotness])
    columns = [c for t in hp.input_tables for c in range(first[t], first[t] + hotness[t])]
    return (
        tf.constant(numerical[start : start + size]),
        tf.constant(categorical[:, columns]),
        tf.constant(labels[start : start + size]),
    )


def consecutive_placement(world: int) -> Placement:
    """Tables in consecutive blocks per rank (rank 0 the first ones), so that they
    arrive from the all-to-all already in table order; the planner's placement
    of these sizes does not (it needs the reordering path)."""
    sizes = embedding_table_bytes(CARDINALITIES, DIM)
    blocks = np.array_split(np.arange(len(CARDINALITIES)), world)
    shards = tuple(
        Shard(int(t), 0, CARDINALITIES[t], sizes[t], rank)
        for rank, block in enumerate(blocks)
        for t in block
    )
    return Placement(world, tuple(sizes), tuple(sorted(shards, key=lambda s: s.table)))


def split_placement() -> Placement:
    """Two ranks; tables 0 and 3 split by rows (table 3's first rows on rank 1)."""
    sizes = embedding_table_bytes(CARDINALITIES, DIM)
    rows = DIM * 4
    pieces = [(0, 0, 4, 0), (0, 4, 7, 1), (1, 0, 11, 0), (2, 0, 5, 1)]
    pieces += [(3, 0, 6, 1), (3, 6, 13, 0), (4, 0, 3, 0)]
    shards = tuple(Shard(t, a, b, (b - a) * rows, r) for t, a, b, r in pieces)
    return Placement(2, tuple(sizes), shards)


def split_multi_hot_placement() -> Placement:
    """Two ranks; table 0 (one-hot) and the multi-hot tables 1 (mean of 3) and 3
    (sum of 2) split by rows, with :data:`MULTI_HOT` hotness."""
    sizes = embedding_table_bytes(CARDINALITIES, DIM)
    rows = DIM * 4
    pieces = [(0, 0, 4, 0), (0, 4, 7, 1), (1, 0, 5, 1), (1, 5, 11, 0), (2, 0, 5, 1)]
    pieces += [(3, 0, 6, 0), (3, 6, 13, 1), (4, 0, 3, 0)]
    shards = tuple(Shard(t, a, b, (b - a) * rows, r) for t, a, b, r in pieces)
    return Placement(2, tuple(sizes), shards)


def make_hybrid(
    comm: Communicator, model: DLRM, placement: Placement | None = None
) -> HybridParallel:
    if placement is None:
        placement = plan_placement(embedding_table_bytes(CARDINALITIES, DIM), comm.size)
    return HybridParallel(model, comm, placement, GLOBAL_BATCH)


def _optimizers(optimizer: str | None, regularisation: dict[str, float] | None):
    if optimizer is None:
        return None
    return make_optimizers(optimizer, LEARNING_RATE, **(regularisation or {}))


def hybrid_train_step(
    hp: HybridParallel, optimizer: str | None = None, regularisation: dict | None = None
):
    """A tf.function step on the hybrid model; returns the global mean loss.

    ``optimizer`` None: plain SGD by assignment; else the training optimizers
    (``make_optimizers``: Keras for the MLPs, row-sparse for the tables), with
    the ``regularisation`` keywords of ``make_optimizers``.
    """
    optimizers = _optimizers(optimizer, regularisation)

    @tf.function
    def step(numerical, categorical, labels):
        embedding_vars = hp.owned_embedding_variables
        dense_vars = hp.model.dense_variables
        with tf.GradientTape() as tape:
            logits = hp.forward(numerical, categorical, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        embedding_grads, dense_grads = tape.gradient(loss, [embedding_vars, dense_vars])
        embedding_grads, dense_grads = hp.reduce_gradients(embedding_grads, dense_grads)
        _apply(optimizers, embedding_grads, embedding_vars, dense_grads, dense_vars)
        return hp.mean_across_ranks(loss, weight=tf.shape(labels)[0])

    step.optimizers = optimizers
    return step


def _apply(optimizers, embedding_grads, embedding_vars, dense_grads, dense_vars) -> None:
    if optimizers is None:
        for variable, grad in zip(
            [*embedding_vars, *dense_vars], [*embedding_grads, *dense_grads], strict=True
        ):
            variable.assign_sub(LEARNING_RATE * tf.convert_to_tensor(grad))
        return
    dense_optimizer, embedding_optimizer = optimizers
    dense_optimizer.apply_gradients(zip(dense_grads, dense_vars, strict=True))
    embedding_optimizer.apply_gradients(zip(embedding_grads, embedding_vars, strict=True))


def reference_train_step(
    model: DLRM, optimizer: str | None = None, regularisation: dict | None = None
):
    """The same step on the whole global batch in one process, no distribution code."""
    optimizers = _optimizers(optimizer, regularisation)
    embedding_vars = [v for v in model.embedding_variables if v is not None]

    @tf.function
    def step(numerical, categorical, labels):
        with tf.GradientTape() as tape:
            logits = model({"numerical": numerical, "categorical": categorical})
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        embedding_grads, dense_grads = tape.gradient(loss, [embedding_vars, model.dense_variables])
        _apply(optimizers, embedding_grads, embedding_vars, dense_grads, model.dense_variables)
        return loss

    return step


def hybrid_evaluate(hp: HybridParallel, batches) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels of all evaluation batches, in global order."""

    @tf.function
    def predict(numerical, categorical, labels):
        probabilities = tf.sigmoid(hp.forward(numerical, categorical))
        return hp.gather_predictions(probabilities, labels)

    outputs = [predict(*rank_view(batch, hp)) for batch in batches]
    return (
        np.concatenate([p.numpy() for p, _ in outputs]),
        np.concatenate([y.numpy() for _, y in outputs]),
    )


def run_hybrid(
    comm: Communicator,
    placement: Placement | None = None,
    optimizer: str | None = None,
    hotness: tuple[int, ...] | None = None,
    linear: bool = False,
    regularisation: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Trains and evaluates with HybridParallel; returns what this rank knows.

    A table this rank holds only rows of is returned as those rows, with
    ``table_{t}_rows`` = ``[start, end]`` and ``shapes_{t}``, the shapes of
    the variable and of its optimizer slots. ``hotness``: the multi-hot
    variant of model and data (:data:`MULTI_HOT`); ``linear``: the model with a linear part;
    ``regularisation``: ``make_optimizers`` keywords (:data:`REGULARISATION`).
    """
    if placement is None:
        model = build_model(hotness=hotness, linear=linear)
    else:
        model = build_rank_model(placement, comm.rank, hotness, linear)
    hp = make_hybrid(comm, model, placement)
    hp.broadcast_dense_variables()
    step = hybrid_train_step(hp, optimizer, regularisation)
    losses = [
        float(step(*rank_view(batch, hp)))
        for batch in make_batches(TRAIN_BATCHES, seed=1, hotness=hotness)
    ]
    predictions, labels = hybrid_evaluate(hp, make_batches(EVAL_BATCHES, seed=2, hotness=hotness))
    result = {"losses": np.array(losses), "predictions": predictions, "labels": labels}
    for t in hp.owned_tables:
        variable = model.embedding_variables[t]
        result[f"table_{t}"] = variable.numpy()
        if t in hp.row_ranges:
            result[f"table_{t}_rows"] = np.array(hp.row_ranges[t])
            shapes = [variable.shape]
            if step.optimizers is not None:
                shapes += [v.shape for v in step.optimizers[1].slots_for(variable).values()]
            result[f"shapes_{t}"] = np.array([list(shape) for shape in shapes])
    for i, variable in enumerate(model.dense_variables):
        result[f"dense_{i}"] = variable.numpy()
    return result


def run_reference(
    optimizer: str | None = None,
    hotness: tuple[int, ...] | None = None,
    linear: bool = False,
    regularisation: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """The single-process reference of :func:`run_hybrid` (plain model call)."""
    model = build_model(hotness=hotness, linear=linear)
    step = reference_train_step(model, optimizer, regularisation)
    losses = [
        float(step(*(tf.constant(a) for a in batch)))
        for batch in make_batches(TRAIN_BATCHES, seed=1, hotness=hotness)
    ]
    eval_batches = make_batches(EVAL_BATCHES, seed=2, hotness=hotness)
    predictions = np.concatenate(
        [tf.sigmoid(model({"numerical": n, "categorical": c})).numpy() for n, c, _ in eval_batches]
    )
    result = {
        "losses": np.array(losses),
        "predictions": predictions,
        "labels": np.concatenate([y for _, _, y in eval_batches]),
    }
    for t, variable in enumerate(model.embedding_variables):
        result[f"table_{t}"] = variable.numpy()
    for i, variable in enumerate(model.dense_variables):
        result[f"dense_{i}"] = variable.numpy()
    return result
