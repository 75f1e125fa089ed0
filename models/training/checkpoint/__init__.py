"""Checkpoints that do not depend on the world size.

Layout of one checkpoint (``<root>/ckpt-<step, 9 digits>/``)::

    checkpoint.json                  format version, step, data position, model
                                     dims, cardinalities, optimizer names, world
                                     size at save, name/shape/dtype of every array
    tables/table_{i}.npy             table i, written by the rank that owns it
    tables/table_{i}.{slot}.npy      its embedding-optimizer slots
    tables/table_{i}.rows_{a}-{b}[.{slot}].npy   rows [a, b) of a table split by
                                     rows, written by the rank holding them
    dense/variable_{k:03d}.npy       dense (MLP) variables, written by rank 0
    dense_optimizer/variable_{k:03d}.npy   dense optimizer variables, rank 0

Every table is a file of its own (or one per row range when it is split by
rows), so a checkpoint written by 8 ranks is restored on 1, 2 or 4: each rank
reads the tables it owns now, and of a table it holds only some rows of, only
those rows (memory-mapped; ``row_shards``), whatever the ranges at save.

With ``--keep_best_checkpoint`` the checkpoint of the best evaluation AUC is
also kept, in ``<root>/best/`` (same layout; never pruned, replaced when the
AUC improves). Every checkpoint records the best so far under ``best`` in its
``checkpoint.json`` (`models.training.early_stopping.BestSoFar.record`).

Saving is atomic: all ranks write into ``ckpt-<step>.tmp/``; after a barrier
rank 0 merges the per-rank manifests into ``checkpoint.json`` and renames the
directory. The rename is the commit point: a crash before it leaves the
previous checkpoints untouched, and "latest" resolution only considers
renamed directories holding a ``checkpoint.json``. All ranks must see the same
file system (a shared one across nodes).

Modules: `layout` (names, discovery, ``checkpoint.json``), `state` (what is
saved: `TrainingState` and the views of it both directions share), `save`,
`restore` and `row_shards` (tables split by rows).
"""

from models.training.checkpoint.layout import (
    BEST_NAME,
    FORMAT_VERSION,
    METADATA_FILE,
    CheckpointError,
    best_checkpoint_dir,
    checkpoint_dir,
    list_checkpoints,
    read_metadata,
    resolve_checkpoint,
)
from models.training.checkpoint.restore import restore_checkpoint
from models.training.checkpoint.save import save_checkpoint
from models.training.checkpoint.state import CheckpointInfo, TrainingState

__all__ = [
    "BEST_NAME",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "CheckpointError",
    "CheckpointInfo",
    "TrainingState",
    "best_checkpoint_dir",
    "checkpoint_dir",
    "list_checkpoints",
    "read_metadata",
    "resolve_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
]
