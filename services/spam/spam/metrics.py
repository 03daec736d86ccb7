"""Evaluation metrics of a spam filter: AUC and spam recall at a fixed rate of ham false positives.

Both the training pipeline and `bench/bench_spam.py` use these, so that every filter is measured the same
way. Scores are "higher means spammier"; ties between a spam and a ham count against the filter when
recall is measured at a false-positive budget (a ham at the threshold would be caught too).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

#: Ham false-positive rates at which spam recall is reported.
FPR_POINTS = (0.0, 0.001, 0.005)


def metric_key(fpr: float) -> str:
    """Name of the recall-at-`fpr` metric; no dots, since the database refuses them in keys."""
    return "recall_at_fpr_" + f"{fpr * 100:g}".replace(".", "_") + "pct"


RECALL_0, RECALL_0_1, RECALL_0_5 = (metric_key(fpr) for fpr in FPR_POINTS)


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> tuple[float, float]:
    """(spam recall, threshold) when at most `fpr` of ham may score at or above the threshold.

    The threshold is the smallest score above the ham that must stay below it; spam scoring strictly
    above the (k+1)-th highest ham score, with k = floor(fpr * hams), is caught.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    ham = np.sort(scores[labels == 0])[::-1]
    spam = scores[labels == 1]
    allowed = math.floor(fpr * len(ham) + 1e-9)
    if allowed >= len(ham):
        return 1.0, -math.inf
    bar = ham[allowed]
    return float(np.mean(spam > bar)), float(bar)


def evaluate(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC and spam recall at each FPR point, as a flat dict ("auc", "recall_at_fpr_0_1pct", …)."""
    labels = np.asarray(labels)
    result = {
        "auc": float(roc_auc_score(labels, scores)),
        "spam": int(labels.sum()),
        "ham": int((labels == 0).sum()),
    }
    for fpr in FPR_POINTS:
        result[metric_key(fpr)] = recall_at_fpr(labels, scores, fpr)[0]
    return result
