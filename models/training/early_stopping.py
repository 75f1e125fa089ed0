"""The best evaluation so far, and when to stop for lack of improvement.

On a small log a ranking model peaks after one or two epochs and then
overfits: the final weights are not the best ones. `BestSoFar` follows the
evaluation AUC of a run: which step scored best, where its checkpoint is
(``--keep_best_checkpoint``), and how many evaluations have passed without
improving on it (``--early_stopping_patience``). It is plain data, saved in
every checkpoint's ``checkpoint.json`` under ``best`` so that a resumed run
keeps both the best so far and its patience count.

Every rank must take the same decisions from it (a checkpoint save and the
loop's end are collective), so it is fed the AUC every rank holds
(`Evaluator` shares rank 0's AUC with all ranks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass
class BestSoFar:
    """The best evaluation AUC of a run and the patience count.

    Attributes:
        patience: evaluations in a row without improvement after which the
            run stops; 0 never stops.
        auc: the best AUC so far (None before the first evaluation with one).
        step: the global step it was measured after.
        evals_without_improvement: evaluations since that one.
        checkpoint: directory of the kept best checkpoint, if any.
    """

    patience: int = 0
    auc: float | None = None
    step: int | None = None
    evals_without_improvement: int = 0
    checkpoint: str | None = None

    def observe(self, step: int, auc: float | None) -> bool:
        """Counts one evaluation; True when ``auc`` is a new best (strictly higher).

        An evaluation without an AUC (labels of one class) neither improves
        nor counts against the patience: it says nothing about the model.
        """
        if auc is None:
            return False
        if self.auc is None or auc > self.auc:
            self.auc, self.step = float(auc), int(step)
            self.evals_without_improvement = 0
            return True
        self.evals_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.evals_without_improvement >= self.patience

    def record(self) -> dict[str, Any]:
        """What ``checkpoint.json`` stores under ``best`` (the patience is a run flag)."""
        return {
            "auc": self.auc,
            "step": self.step,
            "evals_without_improvement": self.evals_without_improvement,
            "checkpoint": self.checkpoint,
        }

    def resume(self, record: Mapping[str, Any] | None) -> None:
        """Continues from a checkpoint's ``best`` record (None: nothing to continue)."""
        if not record:
            return
        self.auc = None if record.get("auc") is None else float(record["auc"])
        self.step = None if record.get("step") is None else int(record["step"])
        self.evals_without_improvement = int(record.get("evals_without_improvement", 0))
        self.checkpoint = record.get("checkpoint")

    def adopt_if_better(self, record: Mapping[str, Any] | None) -> bool:
        """Takes the AUC, step and checkpoint of ``record`` if it scored higher.

        A resumed run may restart from a checkpoint older than the kept best
        one (the best was saved after the last periodic checkpoint): the kept
        best must not then be replaced by a worse model. The patience count
        stays that of the checkpoint the run continues from.
        """
        if not record or record.get("auc") is None:
            return False
        if self.auc is not None and float(record["auc"]) <= self.auc:
            return False
        self.auc, self.step = float(record["auc"]), int(record["step"])
        self.checkpoint = record.get("checkpoint")
        return True
