"""The training loop's side effects: progress lines, evaluations, checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.training.evaluator import EvalResult, Evaluator
from models.training.progress import Progress
from models.training.results_log import ResultsLogger

# (name, step, total batches) -> the progress of a pass over batches
ProgressFactory = Callable[[str, int, int], Progress]


class LoopHooks:
    """Progress lines, evaluations and checkpoints of `Trainer.fit` (its `Hooks`).

    Args:
        logger: the results log.
        evaluator: evaluates the model (None with --skip_eval).
        eval_split: the evaluation split (`as_dataset()`), None with --skip_eval.
        save: ``(step, epoch, batch, best) -> None`` writes a checkpoint (the
            kept best one when ``best``).
        progress: makes the progress of each evaluation (lines every
            ``--print_freq`` batches on rank 0).
    """

    def __init__(
        self,
        logger: ResultsLogger,
        evaluator: Evaluator | None,
        eval_split: Any,
        save: Callable[[int, int, int, bool], None],
        progress: ProgressFactory,
    ) -> None:
        self._logger, self._evaluator = logger, evaluator
        self._eval_split, self._save = eval_split, save
        self._progress = progress

    def progress(self, step: int, metrics: dict[str, float]) -> None:
        self._logger.log(step, metrics)

    def evaluate(self, step: int, alive: Callable[[], None]) -> EvalResult:
        total = self._evaluator.batches_to_read(len(self._eval_split))
        result = self._evaluator.evaluate(
            self._eval_split.as_dataset(),
            on_batch=alive,
            progress=self._progress("eval", step, total),
        )
        if result.log_loss is not None:  # rank 0; its AUC is None for one-class labels
            metrics = {} if result.auc is None else {"auc": result.auc}
            self._logger.log(
                step,
                {
                    **metrics,
                    "validation_loss": result.log_loss,
                    "eval_samples": result.samples,
                    "eval_seconds": result.seconds,
                },
            )
        return result

    def save_checkpoint(self, step: int, epoch: int, batch: int, best: bool = False) -> None:
        self._save(step, epoch, batch, best)
