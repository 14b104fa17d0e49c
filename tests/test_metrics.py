"""Metrics equal scikit-learn's; k-fold summaries are the mean and std over folds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)

from emo.fusion.metrics import aggregate_folds, score

CLASSES = ["angry", "happy", "neutral", "sad", "fear"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 200)
    # Imbalanced, partly right predictions, so weighted and macro F1 differ.
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
    y_pred[y_true == 4] = 0
    m = score(y_true, y_pred, CLASSES)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["uar"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))  # UAR = macro recall
    assert m["weighted_f1"] != pytest.approx(m["macro_f1"])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    for i, name in enumerate(CLASSES):
        row = m["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=range(5)).tolist()
    assert m["n"] == 200 and m["classes"] == CLASSES


def test_absent_class_keeps_its_row_in_confusion_and_per_class():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 1, 1, 1])
    m = score(y_true, y_pred, ["a", "b", "c"])
    assert np.array(m["confusion"]).shape == (3, 3)
    assert m["per_class"]["c"]["support"] == 0
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))


def test_aggregate_folds_mean_std_and_pooled_confusion():
    rng = np.random.default_rng(3)
    folds, truths, preds = [], [], []
    for k in range(4):
        t = rng.integers(0, 3, 30)
        p = np.where(rng.random(30) < 0.5 + 0.1 * k, t, rng.integers(0, 3, 30))
        folds.append({**score(t, p, ["x", "y", "z"]), "fold": k})
        truths.append(t)
        preds.append(p)
    pooled = score(np.concatenate(truths), np.concatenate(preds), ["x", "y", "z"])
    summary = aggregate_folds(folds, pooled)
    for key in ("accuracy", "weighted_f1", "macro_f1", "uar"):
        values = [f[key] for f in folds]
        assert summary[key] == pytest.approx(np.mean(values))
        assert summary[f"{key}_std"] == pytest.approx(np.std(values))
    assert summary["confusion"] == np.sum([f["confusion"] for f in folds], axis=0).tolist()
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2, 3]
