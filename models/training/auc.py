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

Measured on the 2-core development VM while other jobs ran (load 5-8):
10M float32 scores 0.2-0.7 s (sklearn 6-8 s); 89M scores 6 s, 13 s on the
first call of a process (page faults of the ~2 GB of fresh temporaries).
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
    as32 = scores.astype(np.float32, copy=False)
    if scores.dtype.itemsize <= 4 or np.array_equal(as32, scores):
        # In place where possible: at 89M samples every temporary costs ~0.5 GB
        # and page faults dominate the run time. +0.0 merges -0.0 into 0.0;
        # flipping the magnitude bits of negative numbers then makes the int32
        # view monotonic in the float value.
        bits = np.add(as32, np.float32(0.0)).view(np.int32)
        flip = bits >> 31
        flip &= np.int32(0x7FFFFFFF)
        bits ^= flip
        del flip
        key = bits.astype(np.int64)
        del bits
        key <<= 1
        key |= labels
        key.sort()
        ordered = np.empty(key.size, dtype=np.int8)
        np.bitwise_and(key, 1, out=ordered, casting="unsafe")
        key >>= 1
        ordered_scores = key
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
    if tied.any():
        # A tie group is a run of tied positions plus the position before it:
        # [first, end). Runs start where `tied` rises and end where it falls.
        steps = np.diff(tied.view(np.int8))
        first = np.flatnonzero(steps == 1)  # the run starts at first + 1
        end = np.flatnonzero(steps == -1) + 1
        if tied[-1]:
            end = np.append(end, tied.size)
        del steps
        count_type = np.int32 if ordered.size < 2**31 else np.int64
        positives_before = np.empty(ordered.size + 1, dtype=count_type)
        positives_before[0] = 0
        np.cumsum(ordered, dtype=count_type, out=positives_before[1:])
        group_pos = (positives_before[end] - positives_before[first]).astype(np.int64)
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
