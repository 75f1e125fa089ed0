"""DLRM and DCNv2 training, evaluation and inference benchmark on Criteo-format data.

    python dlrm_main.py --dataset_path DIR [--mode train|eval|inference] [flags]
    horovodrun -np 8 python dlrm_main.py --use_horovod --dataset_path DIR ...

The run follows the data flow: flags -> config -> communicator and device ->
data -> model (placed on ranks) -> loop -> results. `main(argv)` returns the
result block as a dict, so tests call it directly. Each step lives in
`models/run/`; this file only strings them together.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from typing import Any

from models.huge_pages import restart_with_huge_pages

if __name__ == "__main__":
    # Before TensorFlow allocates anything: glibc reads its tunables at start-up.
    restart_with_huge_pages()

# The imports below follow the restart on purpose (pyproject: E402 ignored here).
import tensorflow as tf
from absl import app
from absl import flags as absl_flags

from models import flags as dlrm_flags
from models.config import Config, ConfigError
from models.data.metadata import DatasetError
from models.device import setup_device, xla_available
from models.distributed.comm import make_communicator
from models.distributed.peers import lost_peer_message
from models.run.budget import plan_tables
from models.run.checkpoint_model import model_from_checkpoint
from models.run.checks import check_launcher, check_outputs, check_world, raw_input_root
from models.run.data import RunData
from models.run.model import build_model, restore_or_sync
from models.run.modes import Job, export, run_mode
from models.run.results import log_parameters, open_results_log
from models.training.checkpoint import CheckpointError
from models.training.lr_schedule import DLRMSchedule
from models.training.nonfinite import NonFiniteError
from models.training.optimizers import make_optimizers

# `--help` lists the flags of models/flags.py as this program's own.
absl_flags.adopt_module_key_flags(dlrm_flags)


def main(argv: list[str]) -> dict[str, Any]:
    """Parses `argv` (program name first), validates it and runs; returns the results."""
    config = dlrm_flags.config_from_flags(dlrm_flags.parse(argv))
    return run(config)


def run(config: Config) -> dict[str, Any]:
    """Runs one configured job; returns the result block (rank 0's figures)."""
    if config.output.restore_checkpoint_path:
        # Model settings the command line does not give come from the checkpoint.
        config = model_from_checkpoint(config)
    check_outputs(config)
    raw_input = raw_input_root(config)
    check_launcher(config.device.use_horovod, os.environ)
    comm = make_communicator(config.device.use_horovod)
    check_world(config, comm.size)
    # Before any TensorFlow op: pins this rank's device and sets the precision policy.
    device = setup_device(config.device, config.optimizer.loss_scale, comm.local_rank)
    comm.record_peers()
    data = RunData(config, comm.rank, comm.size)
    # The dataset's shape (feature spec) fills in what the flags left open,
    # before the configuration is written next to the log.
    config = data.resolve(config)
    logger = open_results_log(config, comm.rank)

    opt = config.optimizer
    schedule = DLRMSchedule(
        opt.learning_rate, opt.warmup_steps, opt.decay_start_step, opt.decay_steps
    )
    dense_optimizer, embedding_optimizer = make_optimizers(
        opt.name,
        schedule,
        jit_embedding_update=xla_available(device.kind),
        embedding_l2=opt.embedding_l2,
        dense_weight_decay=opt.dense_weight_decay,
        embedding_weight_decay=opt.embedding_weight_decay,
    )
    # Before the model exists: tables that cannot fit fail here, not at allocation.
    placement = plan_tables(config, data.cardinalities, comm.size, embedding_optimizer)
    model, parallel = build_model(config, data, comm, placement)
    data.place(parallel.input_tables)
    log_parameters(logger, config, device, data, parallel, embedding_optimizer)

    state = restore_or_sync(
        config, model, parallel, (dense_optimizer, embedding_optimizer), comm, logger
    )
    results = run_mode(Job(config, comm, device, data, parallel, state, schedule, logger))

    if config.output.export_saved_model_path:
        # A training run that kept its best checkpoint exports that one, not the last weights.
        best = results.get("best_checkpoint") if config.output.keep_best_checkpoint else None
        export(model, config.output.export_saved_model_path, parallel, raw_input, weights_from=best)
    logger.result(results)
    logger.close()
    return results


def dataset_error_in(error: tf.errors.OpError) -> str | None:
    """The DatasetError message carried by a TensorFlow error, if any.

    Batches are read inside `tf.data` (graph checks), so a bad file found mid-run
    (an id outside its table, a label byte other than 0/1, a NaN numerical) reaches the
    training loop as an InvalidArgumentError whose text holds the original message
    (as the data of a failed assertion, `[DatasetError: ...]`, see models/data/sequential.py).
    """
    match = re.search(r"\[DatasetError: ([^\n]*)\]", error.message) or re.search(
        r"DatasetError: ([^\n]*)", error.message
    )
    # A file cut since the split was opened, met by TensorFlow's record reader
    # (models/data/sequential.py) before our own length check.
    cut = re.search(
        r"header \((\d+) bytes\) and footer \((\d+) bytes\), input file \"([^\"]+)\" "
        r"has body length (-?\d+) bytes, which is not an exact multiple",
        error.message,
    )
    if cut and not match:
        header, footer, path, body = cut.groups()
        size = int(header) + int(footer) + int(body)
        return (
            f"{path}: short read, the file now ends at byte {size}, inside a batch "
            "(was it truncated after the dataset was opened?)"
        )
    if not match:
        return None
    # The assertion prints its data C-escaped (a quote as \', a backslash doubled).
    return re.sub(r"\\(.)", r"\1", match.group(1).strip())


def _grace_on_terminate() -> None:
    """Under horovodrun: a SIGTERM ends this rank 2 s later instead of at once.

    horovodrun terminates every rank as soon as one has died; the rank whose
    collective just failed needs that moment to print which rank is gone. The
    handler runs when the main thread is back in Python (a rank blocked in an
    op is killed by horovodrun's SIGKILL that follows).
    """

    def terminate_soon(signum: int, frame: Any) -> None:
        timer = threading.Timer(2.0, os._exit, args=(128 + signum,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, terminate_soon)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app.define_help_flags()
    if "HOROVOD_RANK" in os.environ:
        _grace_on_terminate()
    try:
        main(sys.argv)
    # What the user can fix (flags, dataset files, checkpoint) is reported without a
    # traceback; the messages name the flag, file or table.
    except (ConfigError, DatasetError, CheckpointError, absl_flags.Error) as error:
        print(f"dlrm_main.py: {error}", file=sys.stderr)
        sys.exit(2)
    # The loss diverged: the message names the step; the last checkpoint is intact.
    except NonFiniteError as error:
        print(f"dlrm_main.py: {error}", file=sys.stderr)
        sys.exit(1)
    except tf.errors.InvalidArgumentError as error:
        message = dataset_error_in(error)
        if message is None:
            raise
        print(f"dlrm_main.py: {message}", file=sys.stderr)
        sys.exit(2)
    # A rank of the job died: say which instead of the failed collective's traceback.
    except tf.errors.OpError as error:
        message = lost_peer_message(error)
        if message is None:
            raise
        print(f"dlrm_main.py: {message}", file=sys.stderr)
        sys.exit(1)
