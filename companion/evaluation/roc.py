"""ROC curves and the area under them, in NumPy only (the anomaly detection chapter).

A score ranks images from "most normal" (low) to "most anomalous" (high). The ROC curve follows
the true-positive rate (share of anomalies flagged) against the false-positive rate (share of
normal images flagged) as the threshold falls through every distinct score. Its area (AUC) is the
probability that a random anomaly scores higher than a random normal image, ties counting one
half: the Mann-Whitney U statistic divided by ``n_anomalies * n_normal``. 1 separates perfectly,
0.5 is chance (or one score for all), 0 separates perfectly the wrong way round.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from companion.validation import InputError


def check_scores(scores: ArrayLike, is_anomaly: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(scores float64 (N,), is_anomaly bool (N,))`` after checking both, with at least one of each class."""
    s = np.asarray(scores)
    flags = np.asarray(is_anomaly)
    if s.ndim != 1 or s.dtype.kind not in "fiu":
        raise InputError(
            f"scores must be numbers of shape (N,), one per image, got shape {s.shape} and dtype {s.dtype}"
        )
    if not np.isfinite(s).all():
        raise InputError("scores contain NaN or infinite values; drop those images or fix the score")
    if flags.shape != s.shape:
        raise InputError(
            f"is_anomaly has shape {flags.shape} but scores has shape {s.shape}; pass one flag per score"
        )
    if flags.dtype.kind != "b":
        if flags.dtype.kind not in "iuf" or not np.isin(flags, (0, 1)).all():
            raise InputError(
                "is_anomaly must be booleans (or 0/1), such as labels == holdout; "
                f"got dtype {flags.dtype} with values other than 0 and 1"
            )
        flags = flags.astype(bool)
    n_pos = int(flags.sum())
    if n_pos == 0 or n_pos == len(flags):
        raise InputError(
            f"is_anomaly has {n_pos} anomalies among {len(flags)} images; a ROC curve needs at least one "
            "anomaly and one normal image"
        )
    return s.astype(np.float64), flags


def roc_curve(scores: ArrayLike, is_anomaly: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: for each distinct score, from the highest down, the shares of
    normal images (``fpr``) and anomalies (``tpr``) with a score >= that threshold. Both rates start
    at 0 (threshold ``+inf``: nothing flagged) and end at 1; tied scores form one step, a diagonal
    segment when it holds both kinds of image."""
    s, flags = check_scores(scores, is_anomaly)
    order = np.argsort(-s, kind="stable")
    s, flags = s[order], flags[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # where the next score differs
    tp = np.cumsum(flags)[last_of_each]
    fp = (last_of_each + 1) - tp
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return fpr, tpr, np.r_[np.inf, s[last_of_each]]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N of ``values``, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(scores: ArrayLike, is_anomaly: ArrayLike) -> float:
    """Area under :func:`roc_curve`: the share of (anomaly, normal) pairs the score orders correctly,
    ties counting one half (the Mann-Whitney U statistic over ``n_anomalies * n_normal``)."""
    s, flags = check_scores(scores, is_anomaly)
    n_pos = int(flags.sum())
    n_neg = len(flags) - n_pos
    u = _average_ranks(s)[flags].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
