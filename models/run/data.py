"""This rank's training and evaluation splits, binary or synthetic."""

from __future__ import annotations

import dataclasses
from typing import Any

from models.config import SYNTHETIC_NUMERICAL_FEATURES, Config, ConfigError
from models.data.binary import BinaryDataset
from models.data.metadata import load_metadata
from models.data.synthetic import SyntheticDataset


@dataclasses.dataclass(frozen=True)
class DatasetShape:
    """What the model needs to know of the data (a checkpoint's record, without data)."""

    cardinalities: tuple[int, ...]
    num_numerical: int
    hotness: tuple[int, ...]
    combiners: tuple[str, ...]


class RunData:
    """Training and evaluation splits for this rank (binary or synthetic).

    The dataset's shape is known at construction: ``cardinalities`` (they
    size the placement), ``hotness`` and ``combiners`` of each table and
    ``num_numerical`` (from the feature spec of a binary dataset, from the
    flags for synthetic data). The tables this rank reads are set by `place`
    once the tables are placed.
    """

    def __init__(self, config: Config, rank: int, world: int) -> None:
        self._config = config
        self._rank, self._world = rank, world
        self._table_ids: tuple[int, ...] = ()
        data = config.data
        default_combiner = config.model.multi_hot_combiner
        if data.dataset_type == "raw":
            self.metadata = load_metadata(data.dataset_path, validate=False)
            spec = self.metadata.spec
            self.cardinalities = tuple(self.metadata.cardinalities)
            self.num_numerical = self.metadata.num_numerical_features
            self.hotness = tuple(spec.hotness)
            self.combiners = tuple(c or default_combiner for c in spec.combiners)
            given = data.num_numerical_features
            if given is not None and given != self.num_numerical:
                raise ConfigError(
                    f"--num_numerical_features={given} but the dataset at "
                    f"{data.dataset_path} has {self.num_numerical}"
                )
        else:
            self.metadata = None
            self.cardinalities = data.synthetic_cardinalities
            self.num_numerical = (
                SYNTHETIC_NUMERICAL_FEATURES
                if data.num_numerical_features is None
                else data.num_numerical_features
            )
            self.hotness = data.synthetic_hotness or (1,) * len(self.cardinalities)
            self.combiners = (default_combiner,) * len(self.cardinalities)

    def resolve(self, config: Config) -> Config:
        """``config`` with the number of numerical features this run uses filled in.

        Raises:
            ConfigError: the bottom MLP does not end with the embedding dim
                while there are numerical features.
        """
        n = self.num_numerical
        model = config.model
        if n and model.bottom_mlp_dims[-1] != model.embedding_dim:
            raise ConfigError(
                f"--bottom_mlp_dims must end with --embedding_dim ({model.embedding_dim}) "
                f"for the interaction, got {model.bottom_mlp_dims}"
            )
        return dataclasses.replace(
            config,
            data=dataclasses.replace(config.data, num_numerical_features=n),
            model=dataclasses.replace(model, num_numerical_features=n),
        )

    def place(self, table_ids: tuple[int, ...]) -> None:
        """Sets the tables whose ids this rank reads (known once tables are placed)."""
        self._table_ids = tuple(table_ids)

    def split(self, name: str) -> Any:
        """`name` is "train" or "test"; returns an object with `len()` and `as_dataset()`."""
        c, data = self._config, self._config.data
        train = name == "train"
        batch_size = data.batch_size if train else data.valid_batch_size
        common = dict(
            global_batch_size=batch_size,
            table_ids=self._table_ids,
            rank=self._rank,
            world_size=self._world,
            prefetch_batches=max(1, data.prefetch_batches),
        )
        if data.dataset_type == "synthetic":
            return SyntheticDataset(
                num_batches=data.synthetic_train_batches if train else data.synthetic_valid_batches,
                cardinalities=self.cardinalities,
                num_numerical=self.num_numerical,
                hotness=self.hotness,
                # Different seeds: the evaluation set is not the training set.
                seed=c.run.seed if train else c.run.seed + 1,
                **common,
            )
        split = BinaryDataset(
            data.dataset_path,
            name,
            metadata=self.metadata,
            # XLA compiles one program per shape: a short last batch would recompile.
            drop_remainder=train and c.device.enable_xla,
            shuffle=train and c.run.epochs > 1,
            seed=c.run.seed,
            **common,
        )
        if len(split) == 0:
            hint = "" if train else " (train with --skip_eval to go without evaluation)"
            raise ConfigError(
                f"the {name!r} split of --dataset_path={data.dataset_path} has no rows{hint}"
            )
        if c.run.mode == "inference" and split.num_rows < batch_size:
            raise ConfigError(
                f"--mode=inference times full batches, but the {name!r} split of "
                f"--dataset_path={data.dataset_path} has {split.num_rows} rows, fewer than "
                f"--valid_batch_size={batch_size}"
            )
        return split
