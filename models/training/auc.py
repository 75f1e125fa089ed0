"""Exact ROC AUC and log loss over a whole evaluation set (numpy, host side).

The AUC is the Mann-Whitney statistic: the probability that a random positive
scores above a random negative, ties counting one half, which is what
``sklearn.metrics.roc_auc_score`` computes (average ranks for ties). It is
exact, unlike the thresholded ``tf.keras.metrics.AUC`` of the reference
implementation, and sort based: O(n log n).

Speed: float32 scores (what the model outputs) are mapped to order-preserving
integers and packed with the label into one int64 key, so a single
``np.sort`` of plain integers (vectorised in numpy 2) orders scores and puts
negatives before positives within ties. Scores that float32 cannot hold
exactly take a slower ``np.lexsort`` path with the same result.
"""

from __future__ import annotations

import numpy as np


def _validate(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if labels.size == 0:
        raise ValueError("no samples to evaluate")
    if labels.dtype != bool:
        bad = ~np.isin(labels, (0, 1))
        if bad.any():
            raise ValueError(
                f"labels must be 0 or 1; found {labels[bad][:5].tolist()} "
                f"(first at index {int(np.argmax(bad))})"
            )
        labels = labels.astype(bool)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    nan = np.isnan(scores)
    if nan.any():
        raise ValueError(f"{int(nan.sum())} NaN scores (first at index {int(np.argmax(nan))})")
    return labels, scores


def _sorted_labels(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (int8) in score order, negatives first within ties, and tie-run starts.

    Returns:
        sorted labels and a boolean array, True where the score equals the
        previous one in that order.
    """
    as32 = scores.astype(np.float32)
    if scores.dtype.itemsize <= 4 or np.array_equal(as32, scores):
        # +0.0 merges -0.0 into 0.0; then flipping the magnitude bits of negative
        # numbers makes the int32 view monotonic in the float value.
        bits = (as32 + np.float32(0.0)).view(np.int32)
        monotonic = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
        key = monotonic.astype(np.int64) * 2 + labels
        key.sort()
        ordered = (key & 1).astype(np.int8)
        ordered_scores = key >> 1
    else:
        order = np.lexsort((labels, scores))
        ordered = labels[order].astype(np.int8)
        ordered_scores = scores[order]
    tied = np.zeros(ordered.size, dtype=bool)
    np.equal(ordered_scores[1:], ordered_scores[:-1], out=tied[1:])
    return ordered, tied


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact area under the ROC curve; ties count one half (as sklearn).

    Args:
        labels: ``[n]`` (or ``[n, 1]``) 0/1 or bool.
        scores: ``[n]`` (or ``[n, 1]``) predictions, logits or probabilities
            (any monotonic transform gives the same AUC, apart from ties it creates).

    Raises:
        ValueError: mismatched sizes, empty input, labels other than 0/1,
            NaN scores, or a single class (the AUC is undefined).
    """
    labels, scores = _validate(labels, scores)
    positives = int(np.count_nonzero(labels))
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"ROC AUC is undefined with one class: {positives} positives, {negatives} negatives"
        )
    ordered, tied = _sorted_labels(labels, scores)
    # The k-th positive (0-based) at sorted position i has i - k negatives before
    # it, including every negative of its own tie group (negatives sort first).
    pos_positions = np.flatnonzero(ordered)
    below_or_tied = int(pos_positions.sum(dtype=np.int64)) - positives * (positives - 1) // 2
    # Tied negatives count one half: remove half of p * m for each tie group.
    tie_correction = 0.0
    tied_at = np.flatnonzero(tied)  # positions equal to their predecessor
    if tied_at.size:
        # Maximal runs of consecutive tied positions, each with its predecessor,
        # are the tie groups [first, end).
        breaks = np.flatnonzero(np.diff(tied_at) != 1)
        first = tied_at[np.concatenate(([0], breaks + 1))] - 1
        end = tied_at[np.append(breaks, tied_at.size - 1)] + 1
        bounds = np.stack([first, end], axis=1).reshape(-1)
        # reduceat needs indices < len: pad with one zero label.
        sums = np.add.reduceat(np.append(ordered, np.int8(0)), bounds, dtype=np.int64)
        group_pos = sums[0::2]
        tie_correction = 0.5 * float(np.dot(group_pos, (end - first) - group_pos))
    return (below_or_tied - tie_correction) / (positives * negatives)


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities, clipped to [eps, 1 - eps] as sklearn."""
    labels, probabilities = _validate(labels, probabilities)
    p = probabilities.astype(np.float64)
    eps = np.finfo(probabilities.dtype).eps
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(np.where(labels, np.log(p), np.log1p(-p))))


def log_loss_from_logits(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy of logits, stable for any magnitude.

    ``max(x, 0) - x * y + log(1 + exp(-|x|))``, the form of
    ``tf.nn.sigmoid_cross_entropy_with_logits``, in float64.
    """
    labels, logits = _validate(labels, logits)
    x = logits.astype(np.float64)
    return float(np.mean(np.maximum(x, 0.0) - x * labels + np.log1p(np.exp(-np.abs(x)))))
