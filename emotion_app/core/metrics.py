"""Classification metrics reported by training, `evaluate` and the metrics cards."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from .labels import LABELS


def classification_metrics(y_true, y_pred) -> dict:
    """Accuracy, weighted/macro F1, UAR, per-class recall and the 7x7 confusion matrix.

    All seven classes are always scored, so a class missing from the references
    but predicted still counts as an error, and the matrix keeps its shape.
    UAR (unweighted average recall) averages only over classes that occur.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    ids = list(range(len(LABELS)))
    present = sorted(set(y_true.tolist()))
    recalls = recall_score(y_true, y_pred, labels=ids, average=None, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "uar": float(np.mean([recalls[i] for i in present])),
        "per_class_recall": {LABELS[i]: float(recalls[i]) for i in present},
        "support": {LABELS[i]: int((y_true == i).sum()) for i in ids},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }
