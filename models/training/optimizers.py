"""Optimizers: Keras for the dense MLPs, row-sparse ones for the embedding tables.

An embedding table receives ``IndexedSlices`` gradients (the rows looked up
in the batch). The optimizers here update only those rows, and only those
rows of their slot variables, so a step costs O(batch x D) whatever the
table size: Criteo 1TB tables have up to 40M rows, and a dense Adam step
would read and write all of them and both moments every step.

Adam and Adagrad are *lazy*: rows absent from a batch keep their moments
unchanged (as TensorFlow's LazyAdam), which is the usual choice for
embeddings; their formulas otherwise match Keras' (``epsilon`` placement,
bias correction folded into the rate), so touched rows equal dense Keras on
a first step. Duplicate ids of a batch are summed before the update.

Regularisation (all off by default):

- ``embedding_l2`` (``--embedding_l2``) is lazy L2 on the rows a batch looks
  up: each distinct row of the step's gradient gets ``l2 * row`` added to its
  (summed) gradient before the update, once per step whatever its count in the
  batch, i.e. the gradient of ``l2 / 2 * sum ||row||^2`` over those rows. It
  keeps the step O(batch x D); it is the mini-batch-aware form (Zhou et al.,
  2018, DIN) without its frequency weighting, so a rare row is penalised only
  at the few steps that see it. It goes through the optimizer like the
  data gradient (moments, accumulators), as L2 in a loss would.
- ``dense_weight_decay`` (``--dense_weight_decay``) is decoupled weight decay
  of the MLP kernels (Loshchilov & Hutter, 2019, AdamW): Keras' optimizers
  shrink each kernel by ``lr * wd`` besides the update, outside the adaptive
  scaling, which an L2 gradient would go through; biases are not decayed.
- ``embedding_weight_decay`` (``--embedding_weight_decay``) is the same
  decoupled decay for the embedding tables: at each step every row of every
  table (looked up or not) shrinks by ``lr * wd`` besides its update. It is
  not lazy: it costs one pass over the tables per step, which a small log's
  tables afford and Criteo 1TB's do not. It is what a small log needs and
  lazy L2 cannot give: a row looked up in a few batches of an epoch gets
  ``embedding_l2`` a few times and memorises its rows, but is decayed at
  every step, as an L2 prior over all ids (logistic regression's) shrinks the
  rarest ids the most. Each rank decays the rows it holds, so N ranks and
  row-split tables decay exactly as one process; it keeps no state.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import keras
import tensorflow as tf

LearningRate = float | Callable[[tf.Tensor], tf.Tensor]
OPTIMIZER_NAMES = ("sgd", "adam", "adagrad")


def backing_variable(variable: Any) -> tf.Variable:
    """The ``tf.Variable`` behind a Keras 3 variable (or the variable itself).

    Keras 3 variables on the TensorFlow backend wrap a ``tf.Variable`` in
    ``.value``; the scatter ops live on the latter.
    """
    if isinstance(variable, tf.Variable):
        return variable
    value = getattr(variable, "value", None)
    if isinstance(value, tf.Variable):
        return value
    raise TypeError(f"expected a tf.Variable or a Keras variable, got {type(variable).__name__}")


def _variable_key(variable: Any) -> str:
    # Keras paths ("dlrm/embedding_3/embeddings") are unique and independent of
    # creation order and of the process, so checkpoints can match slots by name.
    key = getattr(variable, "path", None) or backing_variable(variable).name
    return key.removesuffix(":0")


@dataclasses.dataclass(frozen=True)
class _RowUpdate:
    """One table's update of a step: its variable, slots and gradient rows."""

    table: tf.Variable
    slots: dict[str, tf.Variable]
    indices: tf.Tensor
    values: tf.Tensor


class SparseOptimizer(tf.Module, abc.ABC):
    """Base class: slot bookkeeping, learning rate, duplicate summing.

    Subclasses define ``slot_initial_values`` and ``_update_rows``.

    Args:
        learning_rate: a float or a schedule called with the number of updates
            already applied (as Keras optimizers do).
        l2: lazy L2 on the rows of each step's gradient (see the module
            docstring); 0 for none.
        weight_decay: decoupled decay of every row of the step's tables by
            ``lr * weight_decay`` besides the update (module docstring); 0 for none.
    """

    slot_initial_values: dict[str, float] = {}

    def __init__(
        self,
        learning_rate: LearningRate,
        name: str | None = None,
        l2: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(name=name)
        if l2 < 0:
            raise ValueError(f"embedding L2 must be >= 0, got {l2}")
        if weight_decay < 0:
            raise ValueError(f"embedding weight decay must be >= 0, got {weight_decay}")
        self.learning_rate = learning_rate
        self.l2 = float(l2)
        self.weight_decay = float(weight_decay)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self._slots: dict[str, dict[str, tf.Variable]] = {}

    def build(self, variables: Iterable[Any]) -> None:
        """Creates the slots of ``variables`` (float32, each table's shape) if missing."""
        for variable in variables:
            key = _variable_key(variable)
            if key in self._slots:
                continue
            table = backing_variable(variable)
            with tf.init_scope():
                self._slots[key] = {
                    name: tf.Variable(
                        tf.fill(table.shape, tf.constant(init, tf.float32)),
                        trainable=False,
                        name=f"{key.replace('/', '_')}_{name}",
                    )
                    for name, init in self.slot_initial_values.items()
                }

    def slots_for(self, variable: Any) -> dict[str, tf.Variable]:
        """The slot variables of ``variable`` by slot name (empty for SGD)."""
        key = _variable_key(variable)
        if key not in self._slots:
            raise KeyError(f"no slots for {key}: build() or apply_gradients() it first")
        return dict(self._slots[key])

    def current_learning_rate(self) -> tf.Tensor:
        lr = self.learning_rate
        if callable(lr):
            return tf.cast(lr(self.iterations), tf.float32)
        return tf.constant(lr, tf.float32)

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Any]]) -> None:
        """Applies one step of row-sparse updates and advances ``iterations``.

        Args:
            grads_and_vars: pairs of ``IndexedSlices`` gradient and table
                variable. A dense gradient is refused: it would mean a
                densified (O(table)) step upstream.
        """
        pairs = list(grads_and_vars)
        self.build(variable for _, variable in pairs)
        lr = self.current_learning_rate()
        step = tf.cast(self.iterations + 1, tf.float32)
        updates = []
        for grad, variable in pairs:
            if grad is None:
                continue
            if not isinstance(grad, tf.IndexedSlices):
                raise TypeError(
                    f"sparse optimizer got a dense {type(grad).__name__} gradient for "
                    f"{_variable_key(variable)}; embedding gradients must stay IndexedSlices"
                )
            table = backing_variable(variable)
            values = tf.cast(grad.values, table.dtype)
            indices = grad.indices
            if self.l2:
                # Once per distinct row, so a row's penalty does not grow with its count.
                indices, values = self._sum_duplicates(indices, values)
                values += self.l2 * tf.gather(table, indices)
            slots = self._slots[_variable_key(variable)]
            updates.append(_RowUpdate(table, slots, indices, values))
        if self.weight_decay:
            # Before the row updates (whose gradients and L2 saw the old rows), as AdamW:
            # row <- row * (1 - lr * wd) - lr * update.
            keep = 1.0 - lr * self.weight_decay
            for _, variable in pairs:
                table = backing_variable(variable)
                table.assign(table * tf.cast(keep, table.dtype))
        self._apply_updates(updates, lr, step)
        self.iterations.assign_add(1)

    def _apply_updates(self, updates: list[_RowUpdate], lr: tf.Tensor, step: tf.Tensor) -> None:
        """Applies every table's update (subclasses may fuse them)."""
        for u in updates:
            self._update_rows(u.table, u.slots, u.indices, u.values, lr, step)

    @staticmethod
    def _sum_duplicates(indices: tf.Tensor, values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Unique row ids and the sum of their gradient rows."""
        unique, position = tf.unique(indices)
        summed = tf.math.unsorted_segment_sum(values, position, tf.shape(unique)[0])
        return unique, summed

    @abc.abstractmethod
    def _update_rows(
        self,
        table: tf.Variable,
        slots: dict[str, tf.Variable],
        indices: tf.Tensor,
        values: tf.Tensor,
        lr: tf.Tensor,
        step: tf.Tensor,
    ) -> None:
        """Updates the rows ``indices`` of ``table`` and ``slots`` (step counts from 1)."""


class SparseSGD(SparseOptimizer):
    """``row -= lr * grad_row``; duplicate ids accumulate in the scatter.

    Args:
        learning_rate: a float or a schedule (see `SparseOptimizer`).
        jit_compile: apply the tables' fixed-size updates in one XLA-compiled function.
            XLA fuses the scaling into the scatter and runs it as one loop per
            table; TensorFlow's CPU scatter shards each table's update over the
            intra-op threads with per-row locks, which contends with the dense
            part's matmuls. With ``jit_compile`` a training step was 11% faster
            in bfloat16 and 5% in float32 at batch 4096 on a 2-core CPU
            (``tools/bench/train`` configuration). Same values up to the
            order in which duplicate ids of a batch are summed. The tables are
            updated in place: the compiled update stays O(batch) (timed the
            same on 200k- and 4M-row tables).
    """

    def __init__(
        self,
        learning_rate: LearningRate,
        name: str | None = None,
        jit_compile: bool = False,
        l2: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, name=name, l2=l2, weight_decay=weight_decay)
        self.jit_compile = jit_compile
        # One compiled function per list of tables (traced once per batch size).
        self._compiled: dict[tuple[int, ...], Callable] = {}

    def _update_rows(self, table, slots, indices, values, lr, step) -> None:
        table.scatter_sub(tf.IndexedSlices(lr * values, indices))

    def _apply_updates(self, updates, lr, step) -> None:
        # XLA compiles one program per shape: an update whose row count changes from
        # step to step (ids routed to a row-split table, the valid ids of multi-hot
        # bags) was recompiled at every step (0.8 -> 36 ms per update for one
        # 4096-row table), so only updates of a fixed row count are compiled.
        fixed = [u for u in updates if self.jit_compile and u.indices.shape.is_fully_defined()]
        varying = [u for u in updates if not any(u is f for f in fixed)]
        super()._apply_updates(varying, lr, step)
        if fixed:
            self._apply_compiled(fixed, lr)

    def _apply_compiled(self, updates, lr) -> None:
        tables = [u.table for u in updates]
        key = tuple(id(t) for t in tables)
        if key not in self._compiled:

            def scatter_all(values, indices, lr):
                for table, rows, ids in zip(tables, values, indices, strict=True):
                    table.scatter_sub(tf.IndexedSlices(lr * rows, ids))
                return tf.constant(0)

            self._compiled[key] = tf.function(scatter_all, jit_compile=True)
        self._compiled[key]([u.values for u in updates], [u.indices for u in updates], lr)


class SparseAdam(SparseOptimizer):
    """Lazy Adam: moments and rows change only for the ids in the batch."""

    slot_initial_values = {"m": 0.0, "v": 0.0}

    def __init__(
        self,
        learning_rate: LearningRate,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str | None = None,
        l2: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, name=name, l2=l2, weight_decay=weight_decay)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def _update_rows(self, table, slots, indices, values, lr, step) -> None:
        ids, grad = self._sum_duplicates(indices, values)
        m = self.beta_1 * tf.gather(slots["m"], ids) + (1.0 - self.beta_1) * grad
        v = self.beta_2 * tf.gather(slots["v"], ids) + (1.0 - self.beta_2) * tf.square(grad)
        slots["m"].scatter_update(tf.IndexedSlices(m, ids))
        slots["v"].scatter_update(tf.IndexedSlices(v, ids))
        alpha = lr * tf.sqrt(1.0 - tf.pow(self.beta_2, step)) / (1.0 - tf.pow(self.beta_1, step))
        table.scatter_sub(tf.IndexedSlices(alpha * m / (tf.sqrt(v) + self.epsilon), ids))


class SparseAdagrad(SparseOptimizer):
    """Adagrad on the rows in the batch (untouched accumulators are unchanged anyway)."""

    def __init__(
        self,
        learning_rate: LearningRate,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        name: str | None = None,
        l2: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, name=name, l2=l2, weight_decay=weight_decay)
        self.slot_initial_values = {"accumulator": float(initial_accumulator_value)}
        self.epsilon = epsilon

    def _update_rows(self, table, slots, indices, values, lr, step) -> None:
        ids, grad = self._sum_duplicates(indices, values)
        acc = tf.gather(slots["accumulator"], ids) + tf.square(grad)
        slots["accumulator"].scatter_update(tf.IndexedSlices(acc, ids))
        table.scatter_sub(tf.IndexedSlices(lr * grad / tf.sqrt(acc + self.epsilon), ids))


def make_optimizers(
    name: str,
    lr_schedule: LearningRate,
    jit_embedding_update: bool = False,
    embedding_l2: float = 0.0,
    dense_weight_decay: float = 0.0,
    embedding_weight_decay: float = 0.0,
) -> tuple[keras.optimizers.Optimizer, SparseOptimizer]:
    """The dense Keras optimizer and the embedding optimizer of one kind.

    Both follow the same learning rate (schedule evaluated at their own
    ``iterations``, which advance together, once per train step).

    Args:
        name: "sgd", "adam" or "adagrad".
        lr_schedule: a float or a schedule such as `DLRMSchedule`.
        jit_embedding_update: XLA-compile the sparse SGD update (see
            `SparseSGD`); Adam and Adagrad sum duplicate ids with
            ``tf.unique``, whose output size XLA cannot compile, and ignore it
            (a static-shape variant summing by sort compiled, but a step was
            no faster with it).
        embedding_l2: lazy L2 of the looked-up rows (module docstring); 0: none.
        dense_weight_decay: decoupled weight decay of the MLP kernels; 0: none.
        embedding_weight_decay: decoupled decay of the whole tables; 0: none.
    """
    dense_classes = {
        "sgd": keras.optimizers.SGD,
        "adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
    }
    if name not in dense_classes:
        raise ValueError(f"--optimizer must be one of {OPTIMIZER_NAMES}, got {name!r}")
    if dense_weight_decay < 0:
        raise ValueError(f"dense weight decay must be >= 0, got {dense_weight_decay}")
    dense = dense_classes[name](learning_rate=lr_schedule, weight_decay=dense_weight_decay or None)
    if dense_weight_decay:
        dense.exclude_from_weight_decay(var_names=["bias"])
    regularisation = {"l2": embedding_l2, "weight_decay": embedding_weight_decay}
    if name == "sgd":
        sparse: SparseOptimizer = SparseSGD(
            lr_schedule, jit_compile=jit_embedding_update, **regularisation
        )
    elif name == "adam":
        sparse = SparseAdam(lr_schedule, **regularisation)
    else:
        sparse = SparseAdagrad(lr_schedule, **regularisation)
    return dense, sparse
