"""Row-sparse embedding optimizers against numpy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.layers import EmbeddingTable
from models.training.lr_schedule import DLRMSchedule
from models.training.optimizers import (
    SparseAdagrad,
    SparseAdam,
    SparseSGD,
    backing_variable,
    make_optimizers,
)

ROWS, DIM = 50, 3
# Two steps; row 7 repeats inside a batch (its gradients must be summed).
STEPS = [np.array([7, 2, 7, 11]), np.array([2, 30])]
TOUCHED = sorted({int(i) for ids in STEPS for i in ids})


def _gradients(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(len(ids), DIM)).astype(np.float32) for ids in STEPS]


def _summed(ids, values):
    out = {}
    for i, v in zip(ids, values.astype(np.float64), strict=True):
        out[int(i)] = out.get(int(i), 0.0) + v
    return out


def _numpy_reference(kind, table, grads, lr, l2=0.0, weight_decay=0.0):
    """Lazy updates on a float64 copy: returns the table and the slots.

    ``l2``: lazy L2, ``l2 * row`` added once to each distinct row's summed gradient.
    ``weight_decay``: every row shrinks by ``lr * weight_decay`` before the updates.
    """
    table = table.astype(np.float64).copy()
    m = np.zeros_like(table)
    v = np.zeros_like(table)
    acc = np.full_like(table, 0.1)
    for t, (ids, values) in enumerate(zip(STEPS, grads, strict=True), start=1):
        summed = {row: g + l2 * table[row] for row, g in _summed(ids, values).items()}
        table *= 1.0 - lr * weight_decay
        for row, g in summed.items():
            if kind == "sgd":
                table[row] -= lr * g
            elif kind == "adam":
                m[row] = 0.9 * m[row] + 0.1 * g
                v[row] = 0.999 * v[row] + 0.001 * g * g
                alpha = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
                table[row] -= alpha * m[row] / (np.sqrt(v[row]) + 1e-7)
            else:
                acc[row] += g * g
                table[row] -= lr * g / np.sqrt(acc[row] + 1e-7)
    return table, {"sgd": {}, "adam": {"m": m, "v": v}, "adagrad": {"accumulator": acc}}[kind]


def _make(kind, lr, jit_compile=False, l2=0.0, weight_decay=0.0):
    if kind == "sgd":
        return SparseSGD(lr, jit_compile=jit_compile, l2=l2, weight_decay=weight_decay)
    assert not jit_compile, "only the SGD update is compiled"
    classes = {"adam": SparseAdam, "adagrad": SparseAdagrad}
    return classes[kind](lr, l2=l2, weight_decay=weight_decay)


# (kind, jit_compile): every optimizer uncompiled, and SGD's compiled update.
KINDS = [("sgd", False), ("adam", False), ("adagrad", False), ("sgd", True)]


@pytest.mark.parametrize(("kind", "jit_compile"), KINDS)
@pytest.mark.parametrize(("use_tf_function", "l2"), [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_touched_rows_match_numpy_and_untouched_rows_and_slots_do_not_move(
    kind, use_tf_function, l2, jit_compile
):
    """The updates, with and without lazy L2 (which must leave untouched rows alone too)."""
    keras.utils.set_random_seed(0)
    layer = EmbeddingTable(ROWS, DIM, name="table")
    variable = layer.embeddings  # a Keras variable, as the model hands it over
    before = variable.numpy().copy()
    grads = _gradients()
    optimizer = _make(kind, 0.05, jit_compile, l2)

    def step(ids, values):
        slices = tf.IndexedSlices(values, ids, dense_shape=tf.constant([ROWS, DIM]))
        optimizer.apply_gradients([(slices, variable)])

    run = tf.function(step, reduce_retracing=True) if use_tf_function else step
    for ids, values in zip(STEPS, grads, strict=True):
        run(tf.constant(ids, tf.int32), tf.constant(values))

    want_table, want_slots = _numpy_reference(kind, before, grads, 0.05, l2)
    if l2:  # the penalty changes the result: the reference is not met by accident
        without, _ = _numpy_reference(kind, before, grads, 0.05)
        assert not np.allclose(without[TOUCHED], want_table[TOUCHED], rtol=1e-4)
    after = variable.numpy()
    untouched = np.setdiff1d(np.arange(ROWS), TOUCHED)
    np.testing.assert_array_equal(after[untouched], before[untouched])
    np.testing.assert_allclose(after[TOUCHED], want_table[TOUCHED], rtol=1e-5, atol=1e-6)
    assert not np.allclose(after[TOUCHED], before[TOUCHED])

    slots = optimizer.slots_for(variable)
    assert set(slots) == set(want_slots)
    for name, slot in slots.items():
        assert isinstance(slot, tf.Variable)
        assert slot.dtype == tf.float32 and tuple(slot.shape) == (ROWS, DIM)
        initial = np.float32(0.1 if name == "accumulator" else 0.0)
        np.testing.assert_array_equal(slot.numpy()[untouched], initial)
        np.testing.assert_allclose(
            slot.numpy()[TOUCHED], want_slots[name][TOUCHED], rtol=1e-5, atol=1e-7
        )
    assert int(optimizer.iterations) == 2


@pytest.mark.parametrize(("kind", "jit_compile"), KINDS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_embedding_weight_decay_shrinks_every_row_besides_the_update(kind, jit_compile, l2):
    """Untouched rows shrink by (1 - lr * wd) per step; touched ones also get their update."""
    keras.utils.set_random_seed(0)
    variable = EmbeddingTable(ROWS, DIM, name="table").embeddings
    before = variable.numpy().copy()
    grads = _gradients(1)
    optimizer = _make(kind, 0.05, jit_compile, l2, weight_decay=2.0)

    @tf.function(reduce_retracing=True)
    def step(ids, values):
        slices = tf.IndexedSlices(values, ids, dense_shape=tf.constant([ROWS, DIM]))
        optimizer.apply_gradients([(slices, variable)])

    for ids, values in zip(STEPS, grads, strict=True):
        step(tf.constant(ids, tf.int32), tf.constant(values))

    after = variable.numpy()
    want, _ = _numpy_reference(kind, before, grads, 0.05, l2, weight_decay=2.0)
    without, _ = _numpy_reference(kind, before, grads, 0.05, l2)
    untouched = np.setdiff1d(np.arange(ROWS), TOUCHED)
    np.testing.assert_allclose(after[untouched], before[untouched] * 0.9**2, rtol=1e-6)
    np.testing.assert_allclose(after, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(without[TOUCHED], want[TOUCHED], rtol=1e-3)


def test_lazy_adam_first_step_equals_dense_keras_adam_on_touched_rows():
    keras.utils.set_random_seed(1)
    table = EmbeddingTable(ROWS, DIM)
    start = table.embeddings.numpy().copy()
    ids, values = STEPS[0], _gradients()[0]
    dense_grad = np.zeros((ROWS, DIM), np.float32)
    np.add.at(dense_grad, ids, values)
    reference = keras.Variable(start)
    keras.optimizers.Adam(learning_rate=0.01).apply_gradients([(dense_grad, reference)])
    SparseAdam(0.01).apply_gradients([(tf.IndexedSlices(values, ids), table.embeddings)])
    rows = np.unique(ids)
    np.testing.assert_allclose(
        table.embeddings.numpy()[rows], reference.numpy()[rows], rtol=1e-5, atol=1e-7
    )


def test_schedule_is_evaluated_at_the_number_of_applied_updates():
    variable = tf.Variable(np.zeros((4, 1), np.float32))
    optimizer = SparseSGD(DLRMSchedule(8.0, warmup_steps=4, decay_start_step=4, decay_steps=0))
    ones = tf.IndexedSlices(tf.ones((1, 1)), tf.constant([0]))
    for _ in range(3):
        optimizer.apply_gradients([(ones, variable)])
    # rates 2, 4, 6 for updates 0, 1, 2
    assert float(variable[0, 0]) == pytest.approx(-12.0)
    assert float(optimizer.current_learning_rate()) == pytest.approx(8.0)


@pytest.mark.parametrize(("kind", "jit_compile"), KINDS)
def test_update_graph_only_gathers_and_scatters_table_rows(kind, jit_compile):
    rows = 100_003  # a size no batch-shaped tensor can have by accident
    variable = tf.Variable(tf.zeros((rows, DIM)))
    optimizer = _make(kind, 0.1, jit_compile)
    optimizer.build([variable])

    @tf.function
    def step(ids, values):
        optimizer.apply_gradients([(tf.IndexedSlices(values, ids), variable)])

    ids_spec, values_spec = tf.TensorSpec([8], tf.int32), tf.TensorSpec([8, DIM], tf.float32)
    concrete = step.get_concrete_function(ids_spec, values_spec)
    if jit_compile:  # the table ops live in the compiled function
        (compiled,) = optimizer._compiled.values()
        lr_spec = tf.TensorSpec([], tf.float32)
        concrete = compiled.get_concrete_function([values_spec], [ids_spec], lr_spec)
    # Every op touching the table or its slots must be row-wise: a whole-variable
    # read or assignment (ReadVariableOp, AssignSubVariableOp, ...) costs O(table).
    big = [variable, *optimizer.slots_for(variable).values()]
    big_handles = {id(v.handle) for v in big}
    internal = {inner.ref() for outer, inner in concrete.graph.captures if id(outer) in big_handles}
    assert len(internal) == len(big)
    touching = {
        op.type
        for op in concrete.graph.get_operations()
        if any(t.ref() in internal for t in op.inputs)
    }
    assert touching
    assert touching <= {"ResourceGather", "ResourceScatterSub", "ResourceScatterUpdate"}, touching
    sizes = {
        out.shape[0]
        for op in concrete.graph.get_operations()
        for out in op.outputs
        if out.shape.rank
    }
    assert rows not in sizes


def test_model_gradient_stays_sparse_and_dense_gradients_are_refused():
    layer = EmbeddingTable(ROWS, DIM)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.constant([1, 4])))
    grad = tape.gradient(loss, layer.embeddings)
    assert isinstance(grad, tf.IndexedSlices)
    optimizer = SparseAdagrad(0.1)
    optimizer.apply_gradients([(grad, layer.embeddings)])
    with pytest.raises(TypeError, match=r"dense .* gradient .*must stay IndexedSlices"):
        optimizer.apply_gradients([(tf.convert_to_tensor(grad), layer.embeddings)])


def test_slots_survive_a_checkpoint_round_trip(tmp_path):
    variable = tf.Variable(tf.zeros((ROWS, DIM)), name="emb")
    optimizer = SparseAdam(0.1)
    optimizer.apply_gradients(
        [(tf.IndexedSlices(tf.ones((2, DIM)), tf.constant([3, 5])), variable)]
    )
    saved = {k: s.numpy().copy() for k, s in optimizer.slots_for(variable).items()}
    path = tf.train.Checkpoint(optimizer=optimizer).save(str(tmp_path / "ckpt"))

    fresh = SparseAdam(0.1)
    fresh.build([variable])
    tf.train.Checkpoint(optimizer=fresh).restore(path).assert_consumed()
    assert int(fresh.iterations) == 1
    for name, value in fresh.slots_for(variable).items():
        np.testing.assert_array_equal(value.numpy(), saved[name])


def test_slots_for_unknown_variable_and_backing_variable():
    optimizer = SparseSGD(0.1)
    keras_var = EmbeddingTable(3, 2).embeddings
    with pytest.raises(KeyError, match="no slots for"):
        optimizer.slots_for(keras_var)
    assert isinstance(backing_variable(keras_var), tf.Variable)
    with pytest.raises(TypeError, match="got ndarray"):
        backing_variable(np.zeros(2))


@pytest.mark.parametrize(
    ("name", "dense_type", "sparse_type"),
    [
        ("sgd", keras.optimizers.SGD, SparseSGD),
        ("adam", keras.optimizers.Adam, SparseAdam),
        ("adagrad", keras.optimizers.Adagrad, SparseAdagrad),
    ],
)
def test_make_optimizers(name, dense_type, sparse_type):
    schedule = DLRMSchedule(2.0, warmup_steps=2, decay_start_step=2, decay_steps=0)
    dense, sparse = make_optimizers(name, schedule)
    assert type(dense) is dense_type
    assert type(sparse) is sparse_type
    assert float(dense.learning_rate) == pytest.approx(1.0)
    assert float(sparse.current_learning_rate()) == pytest.approx(1.0)


def test_make_optimizers_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"one of .*'sgd'.* got 'rmsprop'"):
        make_optimizers("rmsprop", 0.1)


def _sgd_steps(jit_compile: bool, in_function: bool) -> list[np.ndarray]:
    """Two SGD steps on two tables (duplicate ids included); the tables after."""
    tables = [
        tf.Variable(np.arange(ROWS * DIM, dtype=np.float32).reshape(ROWS, DIM) / t)
        for t in (1.0, 3.0)
    ]
    optimizer = SparseSGD(0.5, jit_compile=jit_compile)

    def step(grads):
        optimizer.apply_gradients(
            (tf.IndexedSlices(tf.convert_to_tensor(g), tf.constant(ids)), table)
            for g, ids, table in zip(grads, (STEPS[0], STEPS[0][::-1]), tables, strict=True)
        )
        return tf.constant(0)

    run = tf.function(step) if in_function else step
    for seed in (0, 1):
        run([g[: len(STEPS[0])] for g in (_gradients(seed)[0], _gradients(seed + 5)[0])])
    return [t.numpy() for t in tables]


@pytest.mark.parametrize("in_function", [False, True])
def test_compiled_sgd_update_equals_the_plain_scatter(in_function):
    plain = _sgd_steps(jit_compile=False, in_function=in_function)
    compiled = _sgd_steps(jit_compile=True, in_function=in_function)
    for a, b in zip(plain, compiled, strict=True):
        # equal up to the order in which duplicate ids are summed
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(plain[0][7], np.arange(21, 24, dtype=np.float32))  # moved


def test_make_optimizers_compiles_only_the_sgd_embedding_update():
    _, sgd = make_optimizers("sgd", 0.1, jit_embedding_update=True)
    assert sgd.jit_compile
    _, sgd = make_optimizers("sgd", 0.1)
    assert not sgd.jit_compile
    _, adam = make_optimizers("adam", 0.1, jit_embedding_update=True)
    assert not getattr(adam, "jit_compile", False)


def test_compiled_sgd_update_takes_only_fixed_size_updates():
    # A table whose update changes size from step to step (a row-split table's routed
    # ids, a multi-hot table's valid ids) would be recompiled by XLA at every step.
    fixed_table = tf.Variable(tf.zeros((ROWS, DIM)))
    varying_table = tf.Variable(tf.zeros((ROWS, DIM)))
    optimizer = SparseSGD(0.5, jit_compile=True)

    @tf.function(input_signature=[tf.TensorSpec([4], tf.int32), tf.TensorSpec([None], tf.int32)])
    def step(fixed_ids, varying_ids):
        optimizer.apply_gradients(
            [
                (tf.IndexedSlices(tf.ones((4, DIM)), fixed_ids), fixed_table),
                (
                    tf.IndexedSlices(tf.ones((tf.size(varying_ids), DIM)), varying_ids),
                    varying_table,
                ),
            ]
        )

    step(tf.constant([0, 1, 1, 2]), tf.constant([3, 3, 4]))
    step(tf.constant([0, 0, 0, 0]), tf.constant([5]))
    ((compiled_tables),) = optimizer._compiled
    assert compiled_tables == (id(fixed_table),)
    np.testing.assert_allclose(fixed_table.numpy()[:3, 0], [-2.5, -1.0, -0.5])
    np.testing.assert_allclose(varying_table.numpy()[3:6, 0], [-1.0, -0.5, -0.5])


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad"])
def test_dense_weight_decay_is_decoupled_and_spares_biases(name):
    """Kernels shrink by lr * wd besides the update; biases get the update only."""
    keras.utils.set_random_seed(2)
    plain, _ = make_optimizers(name, 0.1)
    decayed, _ = make_optimizers(name, 0.1, dense_weight_decay=0.5)
    results = []
    for optimizer in (plain, decayed):
        keras.utils.set_random_seed(2)
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
        kernel_before = layer.kernel.numpy().copy()
        grads = [tf.ones_like(layer.kernel), tf.ones_like(layer.bias)]
        optimizer.apply_gradients(zip(grads, [layer.kernel, layer.bias], strict=True))
        results.append((kernel_before, layer.kernel.numpy(), layer.bias.numpy()))
    (before, kernel, bias), (_, kernel_wd, bias_wd) = results
    np.testing.assert_allclose(kernel_wd, kernel - 0.1 * 0.5 * before, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(bias_wd, bias)


def test_regularisation_strengths_are_checked():
    with pytest.raises(ValueError, match="embedding L2 must be >= 0, got -1"):
        make_optimizers("adam", 0.1, embedding_l2=-1.0)
    with pytest.raises(ValueError, match=r"dense weight decay must be >= 0, got -0\.5"):
        make_optimizers("adam", 0.1, dense_weight_decay=-0.5)
    with pytest.raises(ValueError, match=r"embedding weight decay must be >= 0, got -2"):
        make_optimizers("adam", 0.1, embedding_weight_decay=-2.0)
