"""Export a checkpoint as a serving SavedModel, without the training data or flags.

    python -m tools.export CHECKPOINT OUTPUT_DIR [--dataset DATASET_DIR]

CHECKPOINT is a checkpoint directory or the directory holding them (its
latest complete one is used). The model is rebuilt from the configuration the
checkpoint records (dims, tables, model type), restored in one process with
all its tables and written as in ``dlrm_main.py --export_saved_model_path``
(see ``models/export.py`` for the signatures). With ``--dataset``, the
dataset the model was trained on (written by ``python -m preproc``; only its
``metadata.json``, ``feature_spec.yaml`` and ``vocab/`` are read) also gives
it the ``serve_raw`` signature, which takes a log's raw fields. The
SavedModel computes in float32 whatever precision the model was trained in
(the weights are float32 either way). Errors are one line ``tools.export:
...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from models.config import (
    SYNTHETIC_NUMERICAL_FEATURES,
    Config,
    ConfigError,
    DataConfig,
    OutputConfig,
)
from models.distributed.comm import LocalCommunicator
from models.distributed.placement import embedding_table_bytes, plan_placement
from models.export import export_saved_model
from models.run.checkpoint_model import adopt_checkpoint_model, saved_model_config
from models.run.checks import check_outputs
from models.run.data import DatasetShape
from models.run.model import build_model
from models.serving.raw_input import RawInputError, RawInputSpec
from models.training import checkpoint as ckpt


def export_checkpoint(
    checkpoint: str | Path, output: str | Path, dataset: str | Path | None = None
) -> Path:
    """Rebuilds the model ``checkpoint`` describes, restores it and exports it to ``output``.

    ``dataset``: the training dataset, whose vocabularies give the ``serve_raw`` signature.

    Returns:
        The checkpoint directory that was exported.

    Raises:
        ConfigError: ``output`` cannot be written, or the checkpoint records no
            usable model configuration.
        CheckpointError: the checkpoint is missing, damaged (checksums) or
            does not match its record.
        RawInputError: ``dataset`` lacks its metadata or vocabularies, or does not
            match the model.
    """
    directory = ckpt.resolve_checkpoint(checkpoint)
    # Before the model is restored: a missing vocabulary fails in a second, not minutes.
    raw_input = None if dataset is None else RawInputSpec.from_dataset(dataset)
    check_outputs(Config(output=OutputConfig(export_saved_model_path=str(output))))
    record = saved_model_config(ckpt.read_metadata(directory))
    if "cardinalities" not in record:
        raise ConfigError(f"checkpoint {directory} records no table cardinalities")
    cardinalities = tuple(int(c) for c in record["cardinalities"])
    # No data is read: the tables' sizes come from the checkpoint, as for synthetic data.
    base = Config(data=DataConfig(dataset_type="synthetic", synthetic_cardinalities=cardinalities))
    config = adopt_checkpoint_model(base, record, frozenset(), str(directory))
    num_numerical = config.model.num_numerical_features
    shape = DatasetShape(
        cardinalities,
        SYNTHETIC_NUMERICAL_FEATURES if num_numerical is None else num_numerical,
        tuple(int(h) for h in record.get("hotness", [1] * len(cardinalities))),
        tuple(record.get("combiners", [config.model.multi_hot_combiner] * len(cardinalities))),
    )
    comm = LocalCommunicator()
    placement = plan_placement(embedding_table_bytes(cardinalities, config.model.table_width), 1)
    model, _ = build_model(config, shape, comm, placement)
    ckpt.restore_checkpoint(directory, ckpt.TrainingState(model, range(len(cardinalities))), comm)
    export_saved_model(model, str(output), raw_input)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.export", description=__doc__)
    parser.add_argument("checkpoint", help="checkpoint directory (or the directory holding them)")
    parser.add_argument("output", help="SavedModel directory to write (replaced if it exists)")
    parser.add_argument(
        "--dataset",
        help="the training dataset (python -m preproc's output): adds the serve_raw signature, "
        "which takes a log's raw fields",
    )
    args = parser.parse_args(argv)
    try:
        directory = export_checkpoint(args.checkpoint, args.output, args.dataset)
    except (ConfigError, ckpt.CheckpointError, RawInputError) as error:
        print(f"tools.export: {error}", file=sys.stderr)
        return 2
    signatures = "id and raw-input signatures" if args.dataset else "id-input signature"
    print(f"exported {directory} to {args.output} ({signatures})")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
