"""Evaluation over a whole split: exact AUC and log loss on rank 0.

Every rank predicts its data-parallel slice of each batch; logits and labels
of each batch are gathered (in global row order) inside the same compiled
function, and rank 0 copies them to the host (one batch late, so that an
asynchronous device is not left idle). At the end rank 0 computes the exact
(sort-based, not thresholded) ROC AUC and the log loss of the whole split,
and shares the AUC with the other ranks (one scalar collective), so that every
rank decides alike on it (early stopping, the best checkpoint); other ranks
get no log loss and no sample count.

A `models.training.progress.Progress` given to `evaluate` reports batches
done, samples/s and time left every ``--print_freq`` batches on rank 0; it
counts batches on the host and reads each batch's row count from its static
shape, so it adds no wait for the device.

Metrics use logits, not probabilities: the AUC only depends on the order of
the scores, and float32 sigmoids of logits above ~17 all round to 1.0, which
would turn distinct scores into ties; the log loss from logits is exact where
clipped probabilities are not.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
import tensorflow as tf

from models.training import auc as auc_metrics
from models.training.progress import NoProgress, Progress


class Parallel(Protocol):
    """What evaluation needs from `models.distributed.HybridParallel`."""

    def forward(self, numerical: tf.Tensor, categorical: tf.Tensor) -> tf.Tensor: ...

    def gather_predictions(
        self, predictions: tf.Tensor, labels: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]: ...

    def share_from_rank0(self, value: float | None) -> float | None: ...


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Metrics of one evaluation; `log_loss` is None (`samples` 0) off rank 0.

    `auc` is rank 0's on every rank; None when the evaluated labels are all
    of one class (the AUC is undefined there; the log loss is still reported).
    """

    auc: float | None
    log_loss: float | None
    samples: int
    seconds: float
    # Rank 0: the float32 logit of every evaluated row, in the split's order.
    logits: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


class Evaluator:
    """Runs the forward pass over an evaluation split and computes metrics on rank 0.

    Args:
        parallel: the distributed model (forward, gather_predictions).
        is_chief: True on rank 0, which computes the metrics.
        max_batches: stop after this many batches; -1 reads the whole split.
    """

    def __init__(self, parallel: Parallel, is_chief: bool, max_batches: int = -1) -> None:
        self._is_chief = is_chief
        self._max_batches = max_batches
        self._share = parallel.share_from_rank0

        # One trace per batch shape: the short last batch adds one more.
        @tf.function(reduce_retracing=True)
        def predict(features: dict[str, tf.Tensor], labels: tf.Tensor):
            logits = parallel.forward(features["numerical"], features["categorical"])
            return parallel.gather_predictions(logits, labels)

        self._predict = predict

    def batches_to_read(self, split_batches: int) -> int:
        """Batches `evaluate` reads of a split of ``split_batches`` (the progress total)."""
        if self._max_batches < 0:
            return split_batches
        return min(split_batches, self._max_batches)

    def evaluate(
        self,
        batches: Iterable,
        on_batch: Callable[[], None] | None = None,
        progress: Progress | NoProgress | None = None,
    ) -> EvalResult:
        """Evaluates `batches` of ``(features, labels [b, 1])`` elements; every rank calls it.

        ``on_batch`` is called after each batch's predictions (the step
        watchdog's ``alive``, so that a rank stuck in evaluation is caught);
        ``progress`` counts each batch (its lines are on rank 0 only).
        """
        progress = progress or NoProgress()
        start = time.perf_counter()
        logits, labels = [], []

        def keep(result) -> None:
            batch_logits, y = result
            logits.append(np.reshape(batch_logits.numpy(), [-1]))
            labels.append(np.reshape(y.numpy(), [-1]))

        # Rank 0 copies a batch's results to the host one batch late: on an
        # asynchronous device the next batch is already queued when the copy
        # waits, so the device does not idle between batches.
        pending = None
        with progress:
            for index, (features, batch_labels) in enumerate(batches):
                if 0 <= self._max_batches <= index:
                    break
                result = self._predict(features, batch_labels)
                if self._is_chief:
                    if pending is not None:
                        keep(pending)
                    pending = result
                if on_batch is not None:
                    on_batch()
                # The global rows of the batch: a static shape, read without a device wait.
                progress.advance(features["categorical"].shape[0])
            if pending is not None:
                keep(pending)
        seconds = time.perf_counter() - start
        if not self._is_chief:
            return EvalResult(self._share(None), None, 0, seconds)
        if not labels:
            raise ValueError("the evaluation split produced no batches")
        all_logits, all_y = np.concatenate(logits), np.concatenate(labels)
        positives = int(np.count_nonzero(all_y))
        auc = None
        if 0 < positives < all_y.size:
            auc = float(auc_metrics.roc_auc(all_y, all_logits))
        else:
            # Raising here would end a training run before its final checkpoint.
            logging.warning(
                "AUC undefined: the evaluated labels are all of one class (%d positives in %d "
                "samples); reporting the log loss only",
                positives,
                all_y.size,
            )
        log_loss = float(auc_metrics.log_loss_from_logits(all_y, all_logits))
        auc = self._share(auc)
        return EvalResult(
            auc=auc, log_loss=log_loss, samples=int(all_y.size), seconds=seconds, logits=all_logits
        )
