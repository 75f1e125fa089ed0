"""The ranking model shared by DLRM and DCNv2: tables, bottom MLP, interaction, top MLP.

Shapes: ``B`` global batch, ``b`` local batch, ``F`` number of tables,
``T`` tables looked up by this process, ``D`` embedding dim, ``N`` numerical
features, ``C`` id columns of the tables looked up (the sum of their
hotness: one column per single-valued table, ``h`` columns for a multi-hot
table of hotness ``h``, padded with negative ids). On one process B == b and
T == F; under model parallelism the distributed code builds each rank's model
with only the tables it owns (``table_ids``), calls :meth:`RankingModel.lookup` for them and
:meth:`RankingModel.dense_forward` on its slice of the batch.

The models of the family differ only in the interaction layer, which the
model takes as a part (:class:`~models.layers.DotInteraction` for DLRM,
:class:`~models.layers.CrossInteraction` for DCNv2): it receives the
bottom-MLP output ``[b, D]`` and the F embeddings, and its
``compute_output_shape`` gives the width the top MLP is built for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from models.layers import MLP, EmbeddingTable
from models.layers.pooling import COMBINERS, pooled_lookup


def positive_ints(model: str, name: str, values: Sequence[int]) -> tuple[int, ...]:
    """``values`` as a tuple, or ValueError naming ``model``, ``name`` and the bad values."""
    values = tuple(values)
    if not values:
        raise ValueError(f"{model} {name} must not be empty")
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v <= 0]
    if bad:
        raise ValueError(f"{model} {name} must be positive integers, got {bad} in {values}")
    return values


def _table_seed(seed: int, table: int) -> int:
    """A per-table seed that depends on nothing but (seed, table)."""
    return (seed * 1_000_003 + table * 7919) % (2**31 - 1)


class RankingModel(keras.Model):
    """Embedding tables and MLPs around an interaction layer.

    Args:
        cardinalities: rows of each embedding table (F tables).
        interaction: the layer combining the bottom-MLP output and the
            embeddings (``call(bottom [b, D], embeddings)``, see
            ``models/layers/features.py`` for the forms ``embeddings`` takes).
        embedding_dim: D, also the width of the last bottom-MLP layer.
        bottom_mlp_dims: widths of the bottom MLP; the last must equal D.
        top_mlp_dims: widths of the top MLP; the last must be 1 (the logit).
        num_numerical_features: N; 0 means no bottom MLP (the interaction
            then combines the embeddings alone, as NVIDIA's DLRM does).
        table_ids: the tables this model holds (all when None). A rank of a
            model-parallel job holds only the tables it owns, so table memory is
            split over the ranks; the dense part is always complete.
        seed: seed of the table initialisers; table ``t`` is seeded from
            ``(seed, t)``, so its initial rows do not depend on which other
            tables are held (the same on 1 or 8 ranks). None: Keras' global
            generator, in table order.
        row_ranges: for held tables split by rows over ranks, the rows
            ``(start, end)`` this model holds (:class:`EmbeddingTable`'s
            ``row_start``/``row_end``); other held tables are whole.
        hotness: ids per sample of each table (None: 1 for every table). A
            table of hotness > 1 is multi-hot: its vector is pooled over the
            sample's valid ids (:func:`~models.layers.pooling.pooled_lookup`).
        combiners: pooling of each multi-hot table, ``"sum"`` or ``"mean"``;
            one string for all tables. Ignored for tables of hotness 1.
        dropout: rate of the dropout between MLP layers (training only).
        linear: a linear part, as the wide half of Wide & Deep: each table row
            gets one more column, a per-id weight, and the weights of a
            sample's ids (pooled as its vectors are) are added to the logit.
            The tables are then ``D + 1`` wide (:attr:`table_width`); the
            interaction sees the first D columns only.

    Tables stay float32 under a mixed-precision policy; the dense part runs in
    the compute dtype and returns float32 logits.
    """

    #: Recorded in configs and checkpoints; each model of the family sets its own.
    model_type = "ranking"

    def __init__(
        self,
        cardinalities: Sequence[int],
        interaction: keras.layers.Layer,
        embedding_dim: int = 128,
        bottom_mlp_dims: Sequence[int] = (512, 256, 128),
        top_mlp_dims: Sequence[int] = (1024, 1024, 512, 256, 1),
        num_numerical_features: int = 13,
        table_ids: Sequence[int] | None = None,
        seed: int | None = None,
        row_ranges: Mapping[int, tuple[int, int]] | None = None,
        hotness: Sequence[int] | None = None,
        combiners: str | Sequence[str] = "sum",
        dropout: float = 0.0,
        linear: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.linear = bool(linear)
        label = type(self).__name__
        if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{label} dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.cardinalities = positive_ints(label, "cardinalities", cardinalities)
        (self.embedding_dim,) = positive_ints(label, "embedding_dim", (embedding_dim,))
        self.bottom_mlp_dims = positive_ints(label, "bottom_mlp_dims", bottom_mlp_dims)
        self.top_mlp_dims = positive_ints(label, "top_mlp_dims", top_mlp_dims)
        if (
            not isinstance(num_numerical_features, int)
            or isinstance(num_numerical_features, bool)
            or num_numerical_features < 0
        ):
            raise ValueError(
                f"{label} num_numerical_features must be an integer >= 0, "
                f"got {num_numerical_features!r}"
            )
        self.num_numerical_features = num_numerical_features
        #: Columns of every table: D, plus the per-id weight of the linear part.
        self.table_width = self.embedding_dim + int(self.linear)
        if num_numerical_features and self.bottom_mlp_dims[-1] != self.embedding_dim:
            raise ValueError(
                f"the last bottom_mlp_dims entry ({self.bottom_mlp_dims[-1]}) must equal "
                f"embedding_dim ({self.embedding_dim}): the interaction takes the bottom "
                "MLP output as one more feature vector"
            )
        if self.top_mlp_dims[-1] != 1:
            raise ValueError(f"the last top_mlp_dims entry must be 1, got {self.top_mlp_dims}")

        num_tables = len(self.cardinalities)
        self.hotness = (
            (1,) * num_tables if hotness is None else positive_ints(label, "hotness", hotness)
        )
        if len(self.hotness) != num_tables:
            raise ValueError(
                f"{label} has {num_tables} tables but {len(self.hotness)} hotness values"
            )
        self.combiners = (
            (combiners,) * num_tables if isinstance(combiners, str) else tuple(combiners)
        )
        bad = [(t, c) for t, c in enumerate(self.combiners) if c not in COMBINERS]
        if len(self.combiners) != num_tables or bad:
            raise ValueError(
                f"{label} combiners must be {num_tables} of {COMBINERS}, got {combiners!r}"
            )
        held = range(num_tables) if table_ids is None else sorted(set(table_ids))
        bad = [t for t in held if not 0 <= t < num_tables]
        if bad:
            raise ValueError(f"{label} table_ids {bad} out of range for {num_tables} tables")
        self.seed = seed
        self.held_tables = tuple(held)
        self.row_ranges = {int(t): (int(a), int(b)) for t, (a, b) in (row_ranges or {}).items()}
        not_held = sorted(set(self.row_ranges) - set(held))
        if not_held:
            raise ValueError(f"{label} row_ranges name tables {not_held} that it does not hold")
        # Only held tables are Keras layers (tracked, saved); `tables` keeps the
        # global table index, with None for tables held by other ranks.
        self._held_layers = [
            EmbeddingTable(
                self.cardinalities[t],
                self.table_width,
                seed=None if seed is None else _table_seed(seed, t),
                row_start=self.row_ranges.get(t, (0, None))[0],
                row_end=self.row_ranges.get(t, (0, None))[1],
                name=f"embedding_{t}",
            )
            for t in held
        ]
        by_id = dict(zip(held, self._held_layers, strict=True))
        self._tables_by_id = [by_id.get(t) for t in range(num_tables)]
        # Without numerical features there is nothing for a bottom MLP to read.
        self.bottom_mlp = (
            MLP(self.bottom_mlp_dims, final_activation="relu", dropout=dropout, name="bottom_mlp")
            if num_numerical_features
            else None
        )
        self.interaction = interaction
        # The logit layer runs in float32 so that logits and loss keep full precision.
        self.top_mlp = MLP(
            self.top_mlp_dims,
            final_activation=None,
            final_layer_dtype="float32",
            dropout=dropout,
            name="top_mlp",
        )
        bottom_shape = (None, self.embedding_dim) if self.bottom_mlp else None
        embeddings_shape = (None, num_tables, self.embedding_dim)
        if self.bottom_mlp:
            self.bottom_mlp.build((None, self.num_numerical_features))
        self.interaction.build(bottom_shape, embeddings_shape)
        self.top_mlp.build(self.interaction.compute_output_shape(bottom_shape, embeddings_shape))
        # Every variable exists now: the model never needs Keras' deferred build.
        self.built = True

    @property
    def num_tables(self) -> int:
        """F, the number of tables of the whole model (held or not)."""
        return len(self.cardinalities)

    @property
    def tables(self) -> list[EmbeddingTable | None]:
        """The F tables by global index; None for a table this model does not hold."""
        return list(self._tables_by_id)

    def num_columns(self, table_ids: Sequence[int]) -> int:
        """C, the id columns of ``table_ids``: the sum of their hotness."""
        return sum(self.hotness[t] for t in table_ids)

    def lookup(self, categorical: tf.Tensor, table_ids: Sequence[int]) -> list[tf.Tensor]:
        """Looks up the given tables, pooling the multi-hot ones.

        Args:
            categorical: ``[B, C]`` integer ids: table ``table_ids[k]``'s
                ``hotness`` columns follow those of ``table_ids[k - 1]``
                (one column per single-valued table, so ``[B, T]`` when no
                table is multi-hot). Negative ids of a multi-hot table are
                padding.
            table_ids: indices into :attr:`tables`.

        Returns:
            T float32 tensors ``[B, W]`` (W = :attr:`table_width`), in ``table_ids`` order.
        """
        table_ids = list(table_ids)
        bad = [t for t in table_ids if not 0 <= t < self.num_tables]
        if bad:
            raise ValueError(f"table ids {bad} out of range for {self.num_tables} tables")
        missing = [t for t in table_ids if self._tables_by_id[t] is None]
        if missing:
            raise ValueError(
                f"tables {missing} are not held by this model (it holds {list(self.held_tables)})"
            )
        if len(categorical.shape) != 2:
            raise ValueError(f"categorical must be [B, C], got shape {categorical.shape}")
        width = self.num_columns(table_ids)
        if categorical.shape[1] is not None and categorical.shape[1] != width:
            raise ValueError(
                f"categorical has {categorical.shape[1]} columns but tables {table_ids} "
                f"(hotness {[self.hotness[t] for t in table_ids]}) have {width}"
            )
        hotness = [self.hotness[t] for t in table_ids]
        if all(h == 1 for h in hotness):
            # Single-valued tables (all of Criteo's): one plain gather each.
            columns = tf.unstack(categorical, num=len(table_ids), axis=1)
            return [self._tables_by_id[t](ids) for t, ids in zip(table_ids, columns, strict=True)]
        vectors, start = [], 0
        for t, h in zip(table_ids, hotness, strict=True):
            table = self._tables_by_id[t]
            if h == 1:
                vectors.append(table(categorical[:, start]))
            else:
                ids = categorical[:, start : start + h]
                vectors.append(pooled_lookup(table, ids, self.combiners[t]))
            start += h
        return vectors

    def dense_forward(
        self,
        numerical: tf.Tensor,
        embeddings: tf.Tensor | Sequence[tf.Tensor],
        training: bool = False,
    ) -> tf.Tensor:
        """Bottom MLP, interaction and top MLP.

        Args:
            numerical: ``[b, N]`` float.
            embeddings: every table's vectors for this batch slice, in table
                order: one ``[b, F, W]`` tensor, or pieces ``[b, W]`` (one
                table, e.g. the output of :meth:`lookup`) or ``[b, k, W]``
                (k consecutive tables), W = :attr:`table_width`. Any float
                dtype; the interaction casts to the compute dtype.
            training: apply the MLPs' dropout (a training step); no other
                layer behaves differently in training.

        Returns:
            ``[b, 1]`` float32 logits.
        """
        is_pieces = isinstance(embeddings, Sequence)
        pieces = list(embeddings) if is_pieces else [embeddings]
        widths = [1 if len(p.shape) == 2 else p.shape[1] for p in pieces]
        if None not in widths and sum(widths) != self.num_tables:
            shapes = [p.shape for p in pieces] if is_pieces else embeddings.shape
            raise ValueError(f"embeddings must hold {self.num_tables} tables, got shape {shapes}")
        if numerical.shape[-1] is not None and numerical.shape[-1] != self.num_numerical_features:
            raise ValueError(
                f"{self.num_numerical_features} numerical features expected, "
                f"got shape {numerical.shape}"
            )
        linear_logits = None
        if self.linear:
            embeddings, linear_logits = self._split_linear(pieces, is_pieces)
        bottom = self.bottom_mlp(numerical, training=training) if self.bottom_mlp else None
        logits = self.top_mlp(self.interaction(bottom, embeddings), training=training)
        logits = tf.cast(logits, tf.float32)
        return logits if linear_logits is None else logits + linear_logits

    def _split_linear(self, pieces: list[tf.Tensor], is_pieces: bool) -> tuple[Any, tf.Tensor]:
        """The interaction's D columns of ``pieces`` (in the caller's form) and ``[b, 1]``
        float32: the sum of every table's per-id weight (the last column)."""
        dim = self.embedding_dim
        vectors = [p[..., :dim] for p in pieces]
        # One [b, F] tensor of weights however the tables arrive, so that the sum (and its
        # rounding) is the same on one process and on N ranks.
        columns = [p[:, dim:] if len(p.shape) == 2 else p[:, :, dim] for p in pieces]
        weights = tf.concat([tf.cast(c, tf.float32) for c in columns], axis=1)
        total = tf.reduce_sum(weights, axis=1, keepdims=True)
        return (vectors if is_pieces else vectors[0]), total

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """``{"numerical": [B, N], "categorical": [B, C]}`` -> ``[B, 1]`` float32 logits.

        ``C`` covers all F tables (see :meth:`lookup`).
        """
        missing = {"numerical", "categorical"} - set(inputs)
        if missing:
            raise ValueError(
                f"{type(self).__name__} inputs lack {sorted(missing)}; got keys {sorted(inputs)}"
            )
        vectors = self.lookup(inputs["categorical"], range(self.num_tables))
        return self.dense_forward(inputs["numerical"], vectors, training=training)

    @property
    def embedding_variables(self) -> list:
        """The F table variables (float32) by table index, None where not held."""
        return [None if table is None else table.embeddings for table in self._tables_by_id]

    @property
    def dense_variables(self) -> list:
        """Bottom MLP, interaction and top MLP variables, for the dense (data-parallel)
        optimizer."""
        return [
            *(self.bottom_mlp.trainable_variables if self.bottom_mlp else []),
            *self.interaction.trainable_variables,
            *self.top_mlp.trainable_variables,
        ]

    def get_config(self) -> dict[str, Any]:
        """The shared arguments plus ``model_type``; each model adds its interaction's."""
        num_tables = len(self.cardinalities)
        config = {
            "name": self.name,
            "model_type": self.model_type,
            "cardinalities": list(self.cardinalities),
            "embedding_dim": self.embedding_dim,
            "bottom_mlp_dims": list(self.bottom_mlp_dims),
            "top_mlp_dims": list(self.top_mlp_dims),
            "num_numerical_features": self.num_numerical_features,
            # None (all tables) keeps the config of a complete model minimal.
            "table_ids": None if len(self.held_tables) == num_tables else list(self.held_tables),
            "seed": self.seed,
        }
        if any(h != 1 for h in self.hotness):  # only a model with multi-hot tables
            config["hotness"] = list(self.hotness)
            config["combiners"] = list(self.combiners)
        if self.dropout:  # only a model trained with dropout
            config["dropout"] = self.dropout
        if self.linear:  # only a model with a linear part
            config["linear"] = True
        if self.row_ranges:  # only a rank of a row-split job has any
            config["row_ranges"] = {str(t): list(r) for t, r in self.row_ranges.items()}
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RankingModel:
        config = dict(config)
        model_type = config.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(
                f"a {model_type!r} model config cannot build a {cls.__name__} "
                f"(model_type {cls.model_type!r})"
            )
        if config.get("row_ranges"):
            config["row_ranges"] = {int(t): tuple(r) for t, r in config["row_ranges"].items()}
        return cls(**config)
