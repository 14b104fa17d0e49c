"""Scores of a set of predictions, computed with scikit-learn so they match what papers report.

UAR (unweighted average recall) is balanced accuracy: the mean of per-class recalls over the
classes present in the truth. The four headline numbers sit at the top level of metrics.json.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

HEADLINE = ("accuracy", "weighted_f1", "macro_f1", "uar")


def score(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Headline metrics, per-class precision/recall/F1/support and the confusion matrix (rows = true)."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        raise ValueError("no predictions to score")
    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "uar": float(balanced_accuracy_score(y_true, y_pred)),
        "n": int(y_true.size),
        "classes": list(class_names),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The early-stopping criterion on the validation part."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def aggregate_folds(folds: Sequence[dict], pooled: dict) -> dict:
    """k-fold summary: mean and std (numpy's, ddof=0) of each headline metric over folds.

    Per-class scores and the confusion matrix come from the pooled test predictions (every clip
    is tested exactly once across folds); each fold's own scores stay in the `folds` list.
    """
    summary: dict = {}
    for key in HEADLINE:
        values = np.array([f[key] for f in folds], dtype=np.float64)
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    summary["n"] = pooled["n"]
    summary["classes"] = pooled["classes"]
    summary["per_class"] = pooled["per_class"]
    summary["confusion"] = pooled["confusion"]
    summary["pooled"] = {key: pooled[key] for key in HEADLINE}
    summary["folds"] = list(folds)
    return summary
