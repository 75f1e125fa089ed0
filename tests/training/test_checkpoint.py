"""Checkpoints: exact round trip, mismatch messages, atomicity, cross-world-size restore."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.dcnv2 import DCNv2
from models.dlrm import DLRM
from models.training.checkpoint import (
    CheckpointError,
    TrainingState,
    best_checkpoint_dir,
    list_checkpoints,
    read_metadata,
    restore_checkpoint,
    save_checkpoint,
)
from models.training.checkpoint import save as checkpoint_save

CARDINALITIES = (5, 7, 3, 4)
DIMS = {"embedding_dim": 4, "bottom_mlp_dims": (6, 4), "top_mlp_dims": (5, 1)}


class LocalComm:
    rank = 0
    size = 1

    def barrier(self) -> None:
        pass


class ThreadComm:
    """One simulated rank of an in-process world; ranks are threads."""

    def __init__(self, rank: int, barrier: threading.Barrier) -> None:
        self.rank = rank
        self.size = barrier.parties
        self._barrier = barrier

    def barrier(self) -> None:
        self._barrier.wait()


def run_ranks(size: int, fn) -> list:
    """Runs ``fn(comm)`` on ``size`` threads; re-raises the first failure."""
    barrier = threading.Barrier(size, timeout=60)
    results: list = [None] * size
    errors: list = [None] * size

    def body(rank: int) -> None:
        try:
            results[rank] = fn(ThreadComm(rank, barrier))
        except BaseException as err:  # reported to the test thread
            errors[rank] = err
            barrier.abort()  # the other ranks fail instead of waiting forever

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for err in errors:
        if err is not None and not isinstance(err, threading.BrokenBarrierError):
            raise err
    return results


class FakeEmbeddingOptimizer:
    """Stand-in for the sparse optimizer: named slots per table, created by build()."""

    def __init__(self, slot_names=("accumulator", "momentum")) -> None:
        self.iterations = tf.Variable(0, dtype=tf.int64)
        self.slot_names = slot_names
        self._slots = {}

    def build(self, variables) -> None:
        for v in variables:
            if id(v) not in self._slots:
                self._slots[id(v)] = {n: tf.Variable(tf.zeros(v.shape)) for n in self.slot_names}

    def slots_for(self, variable):
        return self._slots[id(variable)]  # KeyError before build(), as the real one


def make_state(
    cardinalities=CARDINALITIES, owned=None, seed=0, optimizer="adam", model_cls=DLRM, **dims
):
    keras.utils.set_random_seed(seed)
    model = model_cls(cardinalities, num_numerical_features=3, **{**DIMS, **dims})
    emb_opt = FakeEmbeddingOptimizer()
    dense_opt = {
        "adam": lambda: keras.optimizers.Adam(0.1),
        "sgd": lambda: keras.optimizers.SGD(0.1),
        # AMP: a loss-scaled SGD with momentum (its own scale variables must round trip too)
        "amp_sgd": lambda: keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.1, momentum=0.9)
        ),
    }[optimizer]()
    owned = range(len(cardinalities)) if owned is None else owned
    return TrainingState(model, list(owned), emb_opt, dense_opt)


def randomize(state: TrainingState, seed: int) -> None:
    """Gives every saved value (weights, slots, optimizer state) a distinct random value."""
    rng = np.random.default_rng(seed)
    state.dense_optimizer.build(state.model.dense_variables)
    variables = [*state.model.embedding_variables, *state.model.dense_variables]
    variables += [s for v in state.model.embedding_variables for s in slot_values(state, v)]
    variables += list(state.dense_optimizer.variables)
    for v in variables:
        dtype = np.dtype(getattr(v.dtype, "as_numpy_dtype", v.dtype))
        v.assign(rng.integers(1, 1000, size=v.shape).astype(dtype))
    state.embedding_optimizer.iterations.assign(int(rng.integers(1, 1000)))
    state.step, state.epoch, state.batch = 1234, 2, 56


def slot_values(state: TrainingState, variable) -> list:
    state.embedding_optimizer.build([variable])
    return [s for _, s in sorted(state.embedding_optimizer.slots_for(variable).items())]


def snapshot(state: TrainingState, tables=None) -> dict[str, np.ndarray]:
    tables = range(len(state.model.embedding_variables)) if tables is None else tables
    values = {}
    for t in tables:
        var = state.model.embedding_variables[t]
        values[f"table{t}"] = var.numpy()
        for k, s in enumerate(slot_values(state, var)):
            values[f"table{t}.slot{k}"] = s.numpy()
    for k, v in enumerate(state.model.dense_variables):
        values[f"dense{k}"] = v.numpy()
    if state.dense_optimizer.built:
        for k, v in enumerate(state.dense_optimizer.variables):
            values[f"opt{k}"] = np.asarray(v.numpy())
    values["emb_iterations"] = state.embedding_optimizer.iterations.numpy()
    return values


def assert_same(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


@pytest.mark.parametrize(
    ("optimizer", "model"),
    [
        ("adam", {}),
        ("amp_sgd", {}),
        ("adam", {"model_cls": DCNv2, "cross_layer_projection_dim": 3}),
    ],
)
def test_round_trip_is_exact(tmp_path: Path, optimizer: str, model: dict) -> None:
    saved = make_state(seed=1, optimizer=optimizer, **model)
    randomize(saved, seed=2)
    path = save_checkpoint(tmp_path, saved, LocalComm())
    assert path == tmp_path / "ckpt-000001234"

    restored = make_state(seed=3, optimizer=optimizer, **model)
    info = restore_checkpoint(tmp_path, restored, LocalComm())

    assert (info.step, info.epoch, info.batch, info.world_size) == (1234, 2, 56, 1)
    assert (restored.step, restored.epoch, restored.batch) == (1234, 2, 56)
    assert info.path == path
    assert_same(snapshot(restored), snapshot(saved))


def test_metadata_records_dims_optimizers_and_arrays(tmp_path: Path) -> None:
    state = make_state()
    randomize(state, seed=4)
    path = save_checkpoint(tmp_path, state, LocalComm())
    meta = json.loads((path / "checkpoint.json").read_text())
    assert meta["model"] == {
        "model_type": "dlrm",
        "embedding_dim": 4,
        "bottom_mlp_dims": [6, 4],
        "top_mlp_dims": [5, 1],
        "num_numerical_features": 3,
        "cardinalities": list(CARDINALITIES),
    }
    assert meta["optimizers"]["dense"] == "Adam"
    assert meta["optimizers"]["embedding"] == "FakeEmbeddingOptimizer"
    assert meta["data_position"] == {"epoch": 2, "batch": 56}
    assert meta["arrays"]["tables/table_1.npy"]["shape"] == [7, 4]
    assert meta["arrays"]["tables/table_1.momentum.npy"]["shape"] == [7, 4]
    assert meta["table_owners"] == {"0": 0, "1": 0, "2": 0, "3": 0}
    assert not list(path.glob("manifest.*")), "per-rank manifests are merged and removed"


def test_mismatched_model_names_every_difference(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, make_state(), LocalComm())
    other = make_state(cardinalities=(5, 9, 3, 4), embedding_dim=8, bottom_mlp_dims=(6, 8))
    before = snapshot(other)
    with pytest.raises(CheckpointError) as err:
        restore_checkpoint(tmp_path, other, LocalComm())
    message = str(err.value)
    assert "table 1: checkpoint has 7 rows, model has 9" in message
    assert "embedding_dim: checkpoint 4, model 8" in message
    assert "bottom_mlp_dims: checkpoint [6, 4], model [6, 8]" in message
    assert "table 0" not in message
    assert_same(snapshot(other), before)


def test_dcnv2_records_its_type_and_cross_dims(tmp_path: Path) -> None:
    state = make_state(model_cls=DCNv2, num_cross_layers=2, cross_layer_projection_dim=None)
    path = save_checkpoint(tmp_path, state, LocalComm())
    meta = json.loads((path / "checkpoint.json").read_text())["model"]
    assert meta["model_type"] == "dcnv2"
    assert (meta["num_cross_layers"], meta["cross_layer_projection_dim"]) == (2, None)
    other = make_state(model_cls=DCNv2, num_cross_layers=3, cross_layer_projection_dim=2)
    with pytest.raises(CheckpointError) as err:
        restore_checkpoint(tmp_path, other, LocalComm())
    assert "num_cross_layers: checkpoint 2, model 3" in str(err.value)
    assert "cross_layer_projection_dim: checkpoint None, model 2" in str(err.value)


@pytest.mark.parametrize(("saved", "run"), [(False, True), (True, False)])
def test_a_linear_part_on_one_side_only_is_named(tmp_path: Path, saved, run) -> None:
    """A checkpoint without a linear part records no ``linear``: it reads as False."""
    save_checkpoint(tmp_path, make_state(linear=saved), LocalComm())
    other = make_state(linear=run)
    before = snapshot(other)
    with pytest.raises(CheckpointError) as err:
        restore_checkpoint(tmp_path, other, LocalComm())
    assert f"linear: checkpoint {saved}, model {run}" in str(err.value)
    assert_same(snapshot(other), before)


@pytest.mark.parametrize(("saved_cls", "run_cls"), [(DCNv2, DLRM), (DLRM, DCNv2)])
def test_restoring_into_the_other_model_type_names_both(tmp_path: Path, saved_cls, run_cls):
    save_checkpoint(tmp_path, make_state(model_cls=saved_cls), LocalComm())
    other = make_state(model_cls=run_cls)
    before = snapshot(other)
    with pytest.raises(CheckpointError) as err:
        restore_checkpoint(tmp_path, other, LocalComm())
    saved, run = saved_cls.model_type, run_cls.model_type
    assert (
        f"the checkpoint holds a {saved} model, this run builds {run} (--model_type={saved}"
        in str(err.value)
    )
    assert_same(snapshot(other), before)


def test_a_checkpoint_without_model_type_is_a_dlrm_checkpoint(tmp_path: Path) -> None:
    saved = make_state(seed=1)
    randomize(saved, seed=2)
    path = save_checkpoint(tmp_path, saved, LocalComm())
    meta_file = path / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    del meta["model"]["model_type"]  # as written before DCNv2 existed
    meta_file.write_text(json.dumps(meta))
    restored = make_state(seed=3)
    restore_checkpoint(tmp_path, restored, LocalComm())
    assert_same(snapshot(restored), snapshot(saved))
    with pytest.raises(CheckpointError, match="holds a dlrm model, this run builds dcnv2"):
        restore_checkpoint(tmp_path, make_state(model_cls=DCNv2), LocalComm())


def test_mismatched_table_count_and_optimizer(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, make_state(), LocalComm())
    with pytest.raises(CheckpointError, match="number of tables: checkpoint 4, model 3"):
        restore_checkpoint(tmp_path, make_state(cardinalities=(5, 7, 3)), LocalComm())
    with pytest.raises(CheckpointError, match="dense optimizer: checkpoint Adam, run SGD"):
        restore_checkpoint(tmp_path, make_state(optimizer="sgd"), LocalComm())
    with pytest.raises(CheckpointError, match=r"checkpoint Adam, run LossScaleOptimizer\(SGD\)"):
        restore_checkpoint(tmp_path, make_state(optimizer="amp_sgd"), LocalComm())


def test_resuming_mid_epoch_with_another_batch_size_is_refused(tmp_path: Path) -> None:
    saved = make_state()
    saved.global_batch_size = 256
    saved.step, saved.epoch, saved.batch = 10, 1, 4
    save_checkpoint(tmp_path / "mid", saved, LocalComm())
    resumed = make_state()
    resumed.global_batch_size = 128
    with pytest.raises(CheckpointError, match="global batch size of 256; resuming with 128"):
        restore_checkpoint(tmp_path / "mid", resumed, LocalComm())
    # Same batch size, an epoch boundary, or a weights-only restore: accepted.
    resumed.global_batch_size = 256
    assert restore_checkpoint(tmp_path / "mid", resumed, LocalComm()).batch == 4
    saved.step, saved.epoch, saved.batch = 16, 2, 0
    save_checkpoint(tmp_path / "end", saved, LocalComm())
    resumed.global_batch_size = 128
    assert restore_checkpoint(tmp_path / "end", resumed, LocalComm()).epoch == 2
    restore_checkpoint(tmp_path / "mid", TrainingState(resumed.model, range(4)), LocalComm())


def test_weights_only_restore_without_optimizers(tmp_path: Path) -> None:
    saved = make_state(seed=1)
    randomize(saved, seed=5)
    save_checkpoint(tmp_path, saved, LocalComm())
    model = make_state(seed=2).model
    state = TrainingState(model, range(len(CARDINALITIES)))
    restore_checkpoint(tmp_path, state, LocalComm())
    for a, b in zip(model.embedding_variables, saved.model.embedding_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.dense_variables, saved.model.dense_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncate", r"table_2\.npy: corrupt array file \(table 2\)"),
        ("delete", r"table_3\.accumulator\.npy: missing \(table 3 slot accumulator\)"),
        ("garbage_json", r"checkpoint\.json: unreadable checkpoint metadata"),
        ("reshape", r"table_0\.npy: holds <f4\[2, 4\] but checkpoint\.json says <f4\[5, 4\]"),
        # The probe's bit rot: 64 bytes overwritten inside the array, the size unchanged.
        ("bitrot", r"table_1\.npy: checksum mismatch \(table 1\): CRC-32 [0-9a-f]{8}, "),
    ],
)
def test_damaged_files_are_named_and_model_untouched(tmp_path: Path, damage, expected) -> None:
    saved = make_state(seed=1)
    randomize(saved, seed=6)
    path = save_checkpoint(tmp_path, saved, LocalComm())
    if damage == "truncate":
        file = path / "tables/table_2.npy"
        file.write_bytes(file.read_bytes()[:-10])
    elif damage == "delete":
        (path / "tables/table_3.accumulator.npy").unlink()
    elif damage == "bitrot":
        data = bytearray((path / "tables/table_1.npy").read_bytes())
        data[-64:] = bytes(64)  # inside the float data, after the header
        (path / "tables/table_1.npy").write_bytes(bytes(data))
    elif damage == "garbage_json":
        (path / "checkpoint.json").write_text('{"format_version": 1,')
    else:
        np.save(path / "tables/table_0.npy", np.zeros((2, 4), np.float32))
    state = make_state(seed=2)
    before = snapshot(state)
    with pytest.raises(CheckpointError, match=expected):
        restore_checkpoint(tmp_path, state, LocalComm())
    assert_same(snapshot(state), before)


def test_checkpoints_without_checksums_still_restore(tmp_path: Path) -> None:
    saved = make_state(seed=1)
    randomize(saved, seed=6)
    path = save_checkpoint(tmp_path, saved, LocalComm())
    metadata = json.loads((path / "checkpoint.json").read_text())
    assert all(isinstance(entry["crc32"], int) for entry in metadata["arrays"].values())
    for entry in metadata["arrays"].values():  # as written before checksums existed
        del entry["crc32"]
    (path / "checkpoint.json").write_text(json.dumps(metadata))
    state = make_state(seed=2)
    restore_checkpoint(tmp_path, state, LocalComm())
    assert_same(snapshot(state), snapshot(saved))


def test_crash_during_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    first = make_state(seed=1)
    randomize(first, seed=7)
    first.step = 10
    save_checkpoint(tmp_path, first, LocalComm())
    expected = snapshot(first)

    second = make_state(seed=2)
    randomize(second, seed=8)
    second.step = 20
    real_write = checkpoint_save._write_array
    calls = []

    def crashing_write(*args):
        calls.append(args[1])
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real_write(*args)

    monkeypatch.setattr(checkpoint_save, "_write_array", crashing_write)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, second, LocalComm())
    monkeypatch.setattr(checkpoint_save, "_write_array", real_write)

    assert (tmp_path / "ckpt-000000020.tmp").is_dir()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [10]
    fresh = make_state(seed=3)
    assert restore_checkpoint(tmp_path, fresh, LocalComm()).step == 10
    assert_same(snapshot(fresh), expected)

    # The next save cleans the partial directory and becomes the latest.
    save_checkpoint(tmp_path, second, LocalComm())
    assert not list(tmp_path.glob("*.tmp"))
    assert restore_checkpoint(tmp_path, make_state(), LocalComm()).step == 20


def test_keeps_last_k_and_resaving_a_step_replaces_it(tmp_path: Path) -> None:
    state = make_state()
    for step in (1, 2, 3, 4):
        state.step = step
        save_checkpoint(tmp_path, state, LocalComm(), keep=2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3, 4]
    state.batch = 99
    save_checkpoint(tmp_path, state, LocalComm(), keep=2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert restore_checkpoint(tmp_path / "ckpt-000000004", make_state(), LocalComm()).batch == 99
    assert not list(tmp_path.glob("*.replaced"))


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere does not exist"):
        restore_checkpoint(tmp_path / "nowhere", make_state(), LocalComm())
    (tmp_path / "ckpt-000000005").mkdir()  # no checkpoint.json: incomplete
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        restore_checkpoint(tmp_path, make_state(), LocalComm())


def test_saved_on_two_ranks_restored_on_one(tmp_path: Path) -> None:
    # Each rank has its own model replica with the same weights; each writes the tables it owns.
    owners = {0: [0, 3], 1: [1, 2]}
    replicas = [make_state(owned=owners[r], seed=1) for r in range(2)]
    for replica in replicas:
        randomize(replica, seed=9)

    run_ranks(2, lambda comm: save_checkpoint(tmp_path, replicas[comm.rank], comm))

    meta = json.loads((tmp_path / "ckpt-000001234/checkpoint.json").read_text())
    assert meta["world_size"] == 2
    assert meta["table_owners"] == {"0": 0, "1": 1, "2": 1, "3": 0}
    single = make_state(seed=2)
    info = restore_checkpoint(tmp_path, single, LocalComm())
    assert info.world_size == 2
    assert_same(snapshot(single), snapshot(replicas[0]))


def test_saved_on_one_rank_restored_on_two(tmp_path: Path) -> None:
    saved = make_state(seed=1)
    randomize(saved, seed=10)
    save_checkpoint(tmp_path, saved, LocalComm())
    owners = {0: [1, 2, 3], 1: [0]}
    ranks = [make_state(owned=owners[r], seed=2) for r in range(2)]
    untouched = [snapshot(s) for s in ranks]

    run_ranks(2, lambda comm: restore_checkpoint(tmp_path, ranks[comm.rank], comm))

    expected = snapshot(saved)
    for rank, state in enumerate(ranks):
        actual = snapshot(state)
        for key, value in actual.items():
            owned_table = key.startswith("table") and int(key[5:].split(".")[0]) in owners[rank]
            source = expected if owned_table or not key.startswith("table") else untouched[rank]
            np.testing.assert_array_equal(value, source[key], err_msg=f"rank {rank} {key}")


def test_overlapping_or_missing_ownership_fails(tmp_path: Path) -> None:
    overlap = {0: [0, 1, 2], 1: [2, 3]}
    states = [make_state(owned=overlap[r]) for r in range(2)]
    with pytest.raises(CheckpointError, match="table 2 was written by ranks 0 and 1"):
        run_ranks(2, lambda comm: save_checkpoint(tmp_path, states[comm.rank], comm))
    gap = {0: [0], 1: [2, 3]}
    states = [make_state(owned=gap[r]) for r in range(2)]
    with pytest.raises(CheckpointError, match=r"tables \[1\] are owned by no rank"):
        run_ranks(2, lambda comm: save_checkpoint(tmp_path, states[comm.rank], comm))
    assert list_checkpoints(tmp_path) == []


def test_resumed_training_matches_uninterrupted(tmp_path: Path) -> None:
    """Real optimizers and schedule: 3 steps, checkpoint, fresh objects, 3 more steps."""
    from models.training.lr_schedule import DLRMSchedule
    from models.training.optimizers import make_optimizers

    rng = np.random.default_rng(11)
    batches = [
        (
            {
                "numerical": tf.constant(rng.normal(size=(8, 3)), tf.float32),
                "categorical": tf.constant(rng.integers(0, 3, size=(8, 4)), tf.int32),
            },
            tf.constant(rng.integers(0, 2, size=(8, 1)), tf.float32),
        )
        for _ in range(6)
    ]

    def fresh(seed: int) -> TrainingState:
        keras.utils.set_random_seed(seed)
        model = DLRM(CARDINALITIES, num_numerical_features=3, **DIMS)
        schedule = DLRMSchedule(0.05, warmup_steps=2, decay_start_step=3, decay_steps=4)
        dense_opt, emb_opt = make_optimizers("adam", schedule)
        return TrainingState(model, range(len(CARDINALITIES)), emb_opt, dense_opt)

    def train(state: TrainingState, steps) -> None:
        loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        for features, labels in (batches[i] for i in steps):
            model = state.model
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(features))
            grads = tape.gradient(loss, [*model.embedding_variables, *model.dense_variables])
            tables, dense = model.embedding_variables, model.dense_variables
            emb_grads, dense_grads = grads[: len(tables)], grads[len(tables) :]
            state.embedding_optimizer.apply_gradients(zip(emb_grads, tables, strict=True))
            state.dense_optimizer.apply_gradients(zip(dense_grads, dense, strict=True))
            state.step += 1

    uninterrupted = fresh(seed=1)
    train(uninterrupted, range(6))

    first = fresh(seed=1)
    train(first, range(3))
    save_checkpoint(tmp_path, first, LocalComm())
    resumed = fresh(seed=2)  # different initial weights: everything must come from the checkpoint
    assert restore_checkpoint(tmp_path, resumed, LocalComm()).step == 3
    train(resumed, range(3, 6))

    assert resumed.step == uninterrupted.step == 6
    assert int(resumed.embedding_optimizer.iterations) == 6
    for a, b in zip(
        [*resumed.model.embedding_variables, *resumed.model.dense_variables],
        [*uninterrupted.model.embedding_variables, *uninterrupted.model.dense_variables],
        strict=True,
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for table in range(len(CARDINALITIES)):
        got = resumed.embedding_optimizer.slots_for(resumed.model.embedding_variables[table])
        want = uninterrupted.embedding_optimizer.slots_for(
            uninterrupted.model.embedding_variables[table]
        )
        for name in want:
            np.testing.assert_array_equal(got[name].numpy(), want[name].numpy())


def make_split_state(row_ranges, owned, seed=0):
    """A rank holding ``owned`` tables, of which ``row_ranges`` only some rows."""
    keras.utils.set_random_seed(seed)
    model = DLRM(
        CARDINALITIES, num_numerical_features=3, table_ids=owned, row_ranges=row_ranges, **DIMS
    )
    state = TrainingState(
        model,
        list(owned),
        FakeEmbeddingOptimizer(),
        keras.optimizers.Adam(0.1),
        row_ranges=row_ranges,
    )
    # Built here, not in the rank threads: one run of these tests failed once in
    # a rank thread with a SystemError from CPython 3.11's ast.parse.
    state.dense_optimizer.build(model.dense_variables)
    for table in owned:
        state.embedding_optimizer.build([model.embedding_variables[table]])
    return state


# Table 1 (7 rows) split at row 3: rows [0, 3) with table 0 on rank 0, rows [3, 7)
# with tables 2 and 3 on rank 1.
SPLIT = {0: ([0, 1], {1: (0, 3)}), 1: ([1, 2, 3], {1: (3, 7)})}


def _save_split(tmp_path: Path, seed: int) -> dict[str, np.ndarray]:
    """Saves a 2-rank checkpoint with table 1 split; returns the whole tables' values."""
    whole = make_state(seed=1)
    randomize(whole, seed=seed)
    expected = snapshot(whole)
    ranks = [make_split_state(SPLIT[r][1], SPLIT[r][0], seed=2) for r in range(2)]
    for rank, state in enumerate(ranks):
        model = state.model
        for t in SPLIT[rank][0]:
            start, end = SPLIT[rank][1].get(t, (0, CARDINALITIES[t]))
            model.embedding_variables[t].assign(expected[f"table{t}"][start:end])
            for k, slot in enumerate(slot_values(state, model.embedding_variables[t])):
                slot.assign(expected[f"table{t}.slot{k}"][start:end])
        for k, v in enumerate(model.dense_variables):
            v.assign(expected[f"dense{k}"])
        state.dense_optimizer.build(model.dense_variables)
        for k, v in enumerate(state.dense_optimizer.variables):
            v.assign(expected[f"opt{k}"])
        state.embedding_optimizer.iterations.assign(expected["emb_iterations"])
        state.step, state.epoch, state.batch = 1234, 2, 56
    run_ranks(2, lambda comm: save_checkpoint(tmp_path, ranks[comm.rank], comm))
    return expected


def test_table_split_on_two_ranks_is_saved_by_row_ranges_and_restored_on_one(tmp_path):
    expected = _save_split(tmp_path, seed=11)
    directory = tmp_path / "ckpt-000001234"
    meta = json.loads((directory / "checkpoint.json").read_text())
    assert "1" not in meta["tables"] and "1" not in meta["table_owners"]
    shards = meta["table_shards"]["1"]
    assert [(s["rows"], s["rank"]) for s in shards] == [([0, 3], 0), ([3, 7], 1)]
    assert shards[1]["files"]["weights"] == "tables/table_1.rows_3-7.npy"
    # Each rank wrote only its rows, of the table and of each slot.
    assert np.load(directory / "tables/table_1.rows_3-7.npy").shape == (4, 4)
    assert np.load(directory / "tables/table_1.rows_0-3.accumulator.npy").shape == (3, 4)

    single = make_state(seed=3)
    restore_checkpoint(tmp_path, single, LocalComm())
    assert_same(snapshot(single), expected)


@pytest.mark.parametrize("ranges", [((0, 3), (3, 7)), ((0, 5), (5, 7)), ((0, 1), (1, 7))])
def test_any_row_ranges_restore_from_split_or_whole_saves(tmp_path, ranges):
    split_dir, whole_dir = tmp_path / "split", tmp_path / "whole"
    expected = _save_split(split_dir, seed=12)
    whole = make_state(seed=1)
    randomize(whole, seed=12)
    save_checkpoint(whole_dir, whole, LocalComm())
    for source in (split_dir, whole_dir):
        layout = {0: ([0, 1], {1: ranges[0]}), 1: ([1, 2, 3], {1: ranges[1]})}
        ranks = [make_split_state(layout[r][1], layout[r][0], seed=4) for r in range(2)]
        for rank, state in enumerate(ranks):  # a restore has no collective: one at a time
            restore_checkpoint(source, state, ThreadComm(rank, threading.Barrier(2)))
        for rank, state in enumerate(ranks):
            start, end = ranges[rank]
            variable = state.model.embedding_variables[1]
            np.testing.assert_array_equal(variable.numpy(), expected["table1"][start:end])
            for k, slot in enumerate(slot_values(state, variable)):
                np.testing.assert_array_equal(slot.numpy(), expected[f"table1.slot{k}"][start:end])


def test_a_rank_reads_only_the_pieces_holding_its_rows(tmp_path):
    _save_split(tmp_path, seed=13)
    directory = tmp_path / "ckpt-000001234"
    for path in directory.glob("tables/table_1.rows_3-7*.npy"):
        path.unlink()  # rank 1's rows of table 1 are gone
    state = make_split_state({1: (0, 3)}, [0, 1], seed=5)
    restore_checkpoint(tmp_path, state, LocalComm())  # never opens them
    state = make_split_state({1: (2, 5)}, [1], seed=5)
    with pytest.raises(CheckpointError, match=r"table_1.rows_3-7.\w*\.?npy: missing"):
        restore_checkpoint(tmp_path, state, LocalComm())


def test_a_damaged_row_range_file_is_named_by_its_checksum(tmp_path):
    _save_split(tmp_path, seed=14)
    file = tmp_path / "ckpt-000001234" / "tables/table_1.rows_3-7.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last row
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"table_1.rows_3-7.npy: checksum mismatch"):
        restore_checkpoint(tmp_path, make_state(seed=3), LocalComm())
    # A rank whose rows are all in the other piece never reads the damaged one.
    restore_checkpoint(tmp_path, make_split_state({1: (0, 3)}, [0, 1], seed=5), LocalComm())


def test_row_ranges_that_do_not_cover_a_table_fail_the_save(tmp_path):
    layout = {0: ([0, 1], {1: (0, 3)}), 1: ([1, 2, 3], {1: (4, 7)})}
    states = [make_split_state(layout[r][1], layout[r][0]) for r in range(2)]
    with pytest.raises(CheckpointError, match=r"table 1: saved row ranges .* \(at row 3\)"):
        run_ranks(2, lambda comm: save_checkpoint(tmp_path, states[comm.rank], comm))
    assert list_checkpoints(tmp_path) == []


def test_the_dynamic_loss_scale_is_saved_and_restored(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    state = TrainingState(DLRM(CARDINALITIES, num_numerical_features=3, **DIMS), range(4))
    state.loss_scale = {"scale": 256.0, "good_steps": 17}
    path = save_checkpoint(tmp_path / "scaled", state, LocalComm())
    assert json.loads((path / "checkpoint.json").read_text())["loss_scale"] == {
        "scale": 256.0,
        "good_steps": 17,
    }
    resumed = TrainingState(DLRM(CARDINALITIES, num_numerical_features=3, **DIMS), range(4))
    restore_checkpoint(tmp_path / "scaled", resumed, LocalComm())
    assert resumed.loss_scale == {"scale": 256.0, "good_steps": 17}

    state.loss_scale = None  # float32 or bfloat16: nothing saved, nothing restored
    restore_checkpoint(
        save_checkpoint(tmp_path / "plain", state, LocalComm()), resumed, LocalComm()
    )
    assert resumed.loss_scale is None

    meta_file = path / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta["loss_scale"] = {"scale": -1.0, "good_steps": 3}
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"checkpoint\.json: loss_scale .* finite positive"):
        restore_checkpoint(tmp_path / "scaled", resumed, LocalComm())


def test_the_best_checkpoint_is_kept_beside_the_latest_and_never_pruned(tmp_path: Path) -> None:
    state = make_state()
    randomize(state, seed=5)
    state.step = 2
    state.best = {"auc": 0.7, "step": 2, "evals_without_improvement": 0, "checkpoint": "b"}
    best = save_checkpoint(tmp_path, state, LocalComm(), keep=1, best=True)
    assert best == tmp_path / "best" == best_checkpoint_dir(tmp_path)
    expected = snapshot(state)
    randomize(state, seed=6)  # trained on: later checkpoints hold other weights
    for step in (3, 4, 5):
        state.step = step
        state.best = {**state.best, "evals_without_improvement": step - 2}
        save_checkpoint(tmp_path, state, LocalComm(), keep=1)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [5]  # latest: ckpt-5
    restored = make_state(seed=9)
    info = restore_checkpoint(tmp_path / "best", restored, LocalComm())
    assert info.step == 2 and info.path == best
    assert_same(snapshot(restored), expected)
    assert restored.best == {
        "auc": 0.7,
        "step": 2,
        "evals_without_improvement": 0,
        "checkpoint": "b",
    }
    # The latest records the best so far and the patience count, for a resume.
    latest = make_state(seed=9)
    restore_checkpoint(tmp_path, latest, LocalComm())
    assert latest.best["evals_without_improvement"] == 3 and latest.step == 5
    # A new best replaces the old one atomically.
    state.step = 6
    save_checkpoint(tmp_path, state, LocalComm(), best=True)
    assert read_metadata(tmp_path / "best")["step"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "ckpt-000000005"]


def test_asking_for_a_best_checkpoint_that_was_not_kept_says_how_to_keep_one(
    tmp_path: Path,
) -> None:
    save_checkpoint(tmp_path, make_state(), LocalComm())
    with pytest.raises(CheckpointError, match=r"best does not exist: .*--keep_best_checkpoint"):
        restore_checkpoint(tmp_path / "best", make_state(), LocalComm())
