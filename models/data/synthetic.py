"""Synthetic batches with the element structure of the binary dataset.

Two modes:

- ``powerlaw``: ids drawn per table from a bounded Zipf-like law
  (``P(id = k)`` about proportional to ``1 / (k + 1)``), numericals shaped like the
  ``log(x + 3)`` transform of counts, and labels drawn from a known function
  of both (``synthetic_logits``), so a model can learn them;
- ``constant``: one batch repeated, for pure throughput measurements.

A table of hotness ``h`` > 1 (multi-hot) gets ``h`` ids per row, each drawn
from its law (fixed hotness without padding, as the MLPerf DLRM-DCNv2
multi-hot Criteo data); its effect on the label is the mean of its ids'.

Global batch ``i`` of epoch ``e`` is generated from ``(seed, e, i)`` (in
blocks of 4096 rows, each with its own random stream) and then sliced for the
rank, so the data do not depend on the world size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from models.data import pipeline
from models.data.feature_spec import NUMERICAL_DTYPE
from models.data.slicing import batch_slice

MODES = ("powerlaw", "constant")
_BLOCK_ROWS = 4096

# Label model: logit = CAT_WEIGHT * sum of per-id effects / sqrt(F)
#                    + NUM_WEIGHT * weighted centred numericals / sqrt(N) + BIAS.
# Chosen so that about a quarter of the labels are positive (as Criteo) and
# the logits' own AUC (the best any model can reach) is about 0.78:
# learnable but not trivial.
_CAT_WEIGHT = 2.0
_NUM_WEIGHT = 1.0
_BIAS = -1.5
_NUM_CENTER = 1.6


def id_effects(ids: np.ndarray, tables: np.ndarray | None = None) -> np.ndarray:
    """Fixed pseudo-random effect in [-1, 1] of each id of each table.

    Args:
        ids: ``[B, C]`` ids, column ``c`` from table ``tables[c]``.
        tables: the table of each column (None: column ``t`` is table ``t``).

    Returns:
        ``[B, C]`` float32; the same (id, table) pair always gets the same value.
    """
    tables = np.arange(ids.shape[1]) if tables is None else np.asarray(tables)
    salts = (tables.astype(np.uint32) + np.uint32(1)) * np.uint32(0x85EBCA6B)
    # Multiplicative hashing (Knuth) of the id salted by the table, then one
    # xor-shift-multiply round to mix the high bits: effects look independent
    # across ids and tables. uint32 arithmetic wraps, which is the point.
    mixed = (ids.astype(np.uint32) + np.uint32(1)) * np.uint32(0x9E3779B1)
    mixed ^= salts
    mixed ^= mixed >> np.uint32(15)
    mixed *= np.uint32(0x2C1B3C6D)
    bits = (mixed >> np.uint32(8)).astype(np.float32)  # 24 bits, exact in float32
    return bits * np.float32(2.0 / (1 << 24)) - np.float32(1.0)


def synthetic_logits(
    numerical: np.ndarray, ids: np.ndarray, hotness: Sequence[int] | None = None
) -> np.ndarray:
    """The known function the ``powerlaw`` labels are drawn from.

    Args:
        numerical: ``[B, N]`` float32 numerical features.
        ids: ``[B, C]`` categorical ids, ``hotness[t]`` columns per table.
        hotness: ids per row of each table (None: 1 each, ``C = F``).

    Returns:
        ``[B]`` float32 logits; ``label ~ Bernoulli(sigmoid(logit))``.
    """
    logits = np.full(len(numerical), _BIAS, np.float32)
    if ids.shape[1]:
        if hotness is None or all(h == 1 for h in hotness):
            effects = id_effects(ids)
        else:
            tables = np.repeat(np.arange(len(hotness)), hotness)
            # A multi-hot table's effect is the mean of its ids' effects.
            per_column = id_effects(ids, tables) / np.repeat(
                np.asarray(hotness, np.float32), hotness
            )
            effects = np.add.reduceat(per_column, np.cumsum([0, *hotness[:-1]]), axis=1)
        num_tables = effects.shape[1]
        logits += _CAT_WEIGHT * effects.sum(axis=1) / np.float32(math.sqrt(num_tables))
    if numerical.shape[1]:
        weights = np.linspace(-1.0, 1.0, numerical.shape[1], dtype=np.float32)
        centered = numerical - np.float32(_NUM_CENTER)
        logits += _NUM_WEIGHT * (centered @ weights) / np.float32(math.sqrt(numerical.shape[1]))
    return logits


class SyntheticDataset:
    """Synthetic batches for one rank, as numpy arrays or a ``tf.data.Dataset``.

    Args:
        global_batch_size: ``B``, rows of a batch summed over all ranks.
        num_batches: Batches per epoch.
        cardinalities: Rows of each table, id 0 included.
        num_numerical: ``N``, numerical features.
        table_ids: Tables whose ids this rank receives (all when None).
        rank: This rank's data-parallel index.
        world_size: Number of data-parallel ranks.
        seed: Seed of all generated values.
        mode: ``"powerlaw"`` (learnable) or ``"constant"`` (one batch repeated).
        prefetch_batches: Batches prepared ahead of the consumer.
        parallel_batches: Batches generated concurrently.
        hotness: Ids per row of each table (None: 1 each); table ``t`` gives
            ``hotness[t]`` consecutive columns of ``categorical``.
    """

    def __init__(
        self,
        global_batch_size: int,
        num_batches: int,
        cardinalities: Sequence[int],
        num_numerical: int = 13,
        table_ids: Sequence[int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        mode: str = "powerlaw",
        prefetch_batches: int = 8,
        parallel_batches: int = 2,
        hotness: Sequence[int] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if global_batch_size < 1 or num_batches < 0 or num_numerical < 0:
            raise ValueError(
                "need global_batch_size >= 1, num_batches >= 0, num_numerical >= 0; got "
                f"{global_batch_size}, {num_batches}, {num_numerical}"
            )
        bad = [(t, n) for t, n in enumerate(cardinalities) if int(n) < 1]
        if bad:
            raise ValueError(f"cardinalities must be >= 1; (table, rows) offending: {bad}")
        if prefetch_batches < 1 or parallel_batches < 1:
            raise ValueError(
                f"prefetch_batches and parallel_batches must be >= 1, "
                f"got {prefetch_batches} and {parallel_batches}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        batch_slice(global_batch_size, rank, world_size)  # validates rank and world size
        self.cardinalities = tuple(int(n) for n in cardinalities)
        if table_ids is None:
            table_ids = range(len(self.cardinalities))
        self.table_ids = tuple(int(t) for t in table_ids)
        out_of_range = [t for t in self.table_ids if not 0 <= t < len(self.cardinalities)]
        if out_of_range or len(set(self.table_ids)) != len(self.table_ids):
            raise ValueError(
                f"table_ids must be unique and in [0, {len(self.cardinalities)}), "
                f"got {list(self.table_ids)}"
            )
        self.global_batch_size = global_batch_size
        self.num_batches = num_batches
        self.num_numerical = num_numerical
        self.rank, self.world_size = rank, world_size
        self.seed, self.mode = seed, mode
        self.prefetch_batches = prefetch_batches
        self.parallel_batches = parallel_batches
        self.hotness = (1,) * len(self.cardinalities) if hotness is None else tuple(hotness)
        if len(self.hotness) != len(self.cardinalities) or any(
            not isinstance(h, int) or h < 1 for h in self.hotness
        ):
            raise ValueError(
                f"hotness must be {len(self.cardinalities)} integers >= 1 (one per table), "
                f"got {list(self.hotness)}"
            )
        # Per column: table t's law repeated over its hotness columns.
        column_rows = np.repeat(np.asarray(self.cardinalities, np.int64), self.hotness)
        self._log_rows = np.log(column_rows.astype(np.float64))
        self._max_ids = column_rows - 1
        starts = np.cumsum([0, *self.hotness])
        # Columns of this rank's tables in the global batch, in table_ids order.
        self._columns = np.concatenate(
            [np.arange(starts[t], starts[t + 1]) for t in self.table_ids] or [np.zeros(0, int)]
        )

    def __len__(self) -> int:
        return self.num_batches

    @property
    def element_spec(self) -> pipeline.Element:
        local = batch_slice(self.global_batch_size, self.rank, self.world_size)[1]
        return pipeline.element_spec(
            local, self.global_batch_size, self.num_numerical, len(self._columns)
        )

    def global_batch(self, index: int, epoch: int = 0) -> pipeline.BatchArrays:
        """The whole global batch ``index`` (all rows, all tables), whatever the rank.

        Returns:
            ``numerical`` float32 ``[B, N]``, ``categorical`` int32 ``[B, C]``
            (all tables, ``C`` the sum of their hotness), ``labels`` float32 ``[B, 1]``.
        """
        if self.mode == "constant":
            index, epoch = 0, 0
        rows = self.global_batch_size
        numerical = np.empty((rows, self.num_numerical), np.float32)
        categorical = np.empty((rows, len(self._max_ids)), np.int32)
        labels = np.empty((rows, 1), np.float32)
        # Blocks of a fixed size keep the temporaries in cache (a whole batch
        # of 65536 rows at once is ~3x slower per row); each block has its own
        # stream, so the content depends only on (seed, epoch, index, block).
        for block, first in enumerate(range(0, rows, _BLOCK_ROWS)):
            rng = np.random.default_rng([self.seed, epoch, index, block])
            block_rows = slice(first, min(first + _BLOCK_ROWS, rows))
            self._fill_block(
                rng, numerical[block_rows], categorical[block_rows], labels[block_rows]
            )
        return numerical, categorical, labels

    def _fill_block(
        self,
        rng: np.random.Generator,
        numerical: np.ndarray,
        categorical: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        rows = len(numerical)
        # Counts are heavy-tailed; log1p of exponential draws gives numericals
        # in the range the log(x + 3) transform produces. Rounded through
        # the binary dataset's numerical dtype, so synthetic values are ones it can hold.
        raw = rng.standard_exponential((rows, self.num_numerical), np.float32) * np.float32(8.0)
        numerical[:] = np.log1p(raw).astype(NUMERICAL_DTYPE)
        # Inverse CDF of a bounded log-uniform law: id = floor(rows ** u) - 1.
        uniform = rng.random((rows, len(self._max_ids)))
        ids = np.exp(uniform * self._log_rows).astype(np.int64) - 1
        categorical[:] = np.minimum(ids, self._max_ids)
        probability = 1.0 / (1.0 + np.exp(-synthetic_logits(numerical, categorical, self.hotness)))
        labels[:, 0] = rng.random(rows, np.float32) < probability

    def read_batch(self, index: int, epoch: int = 0) -> pipeline.BatchArrays:
        """This rank's view of batch ``index``: its row slice and its tables."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} out of range [0, {self.num_batches})")
        numerical, categorical, labels = self.global_batch(index, epoch)
        start, size = batch_slice(self.global_batch_size, self.rank, self.world_size)
        rows = slice(start, start + size)
        return numerical[rows], np.ascontiguousarray(categorical[:, self._columns]), labels[rows]

    def as_dataset(self, epoch: int = 0, start_batch: int = 0) -> tf.data.Dataset:
        """The batches of one epoch from ``start_batch`` on (to resume mid-epoch)."""
        order = pipeline.batch_order(self.num_batches, start_batch)
        if self.mode == "constant" and len(order):
            numerical, categorical, labels = self.read_batch(0)
            element = ({"numerical": numerical, "categorical": categorical}, labels)
            return tf.data.Dataset.from_tensors(element).repeat(len(order))
        return pipeline.make_dataset(
            order,
            lambda index: self.read_batch(index, epoch),
            self.element_spec,
            self.prefetch_batches,
            self.parallel_batches,
        )
