"""The evaluation metrics shared by training and the benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from spam.metrics import evaluate, metric_key, recall_at_fpr


def test_recall_at_zero_false_positives():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.6, 0.8, 0.9, 0.95])
    recall, bar = recall_at_fpr(labels, scores, 0.0)
    assert recall == pytest.approx(0.75) and bar == 0.7


def test_recall_with_a_false_positive_budget():
    labels = np.array([0] * 10 + [1] * 4)
    scores = np.array([0.0] * 9 + [0.9] + [0.5, 0.6, 0.95, 0.99])
    assert recall_at_fpr(labels, scores, 0.0)[0] == pytest.approx(0.5)
    assert recall_at_fpr(labels, scores, 0.1)[0] == pytest.approx(1.0)


def test_ties_count_against_the_filter():
    labels = np.array([0, 1, 1])
    scores = np.array([1.0, 1.0, 1.0])
    assert recall_at_fpr(labels, scores, 0.0)[0] == 0.0


def test_metric_names_have_no_dots():
    assert metric_key(0.001) == "recall_at_fpr_0_1pct"
    assert all("." not in key for key in evaluate(np.array([0, 1]), np.array([0.2, 0.8])))
