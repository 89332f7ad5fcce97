"""Training pieces shared by the training scripts and in-app fine-tuning."""
from __future__ import annotations

import numpy as np

from ..core.labels import LABELS


def class_weights(labels, power: float = 0.5) -> np.ndarray:
    """Per-class loss weights ``n_class ** -power`` (0: none, 0.5: inverse square root,
    1: balanced), scaled so an average training example weighs 1."""
    return weights_from_counts(np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(LABELS)), power)


def weights_from_counts(counts, power: float = 0.5) -> np.ndarray:
    """``class_weights`` for a label mix known by its (expected) class counts, such as
    a sampler that draws each batch from several corpora."""
    counts = np.asarray(counts, dtype=np.float64)
    w = np.maximum(counts, 1) ** -power
    return (w * counts.sum() / (w * counts).sum()).astype(np.float32)


def warmup_linear_decay(optimizer, total_steps: int, warmup_steps: int):
    """Learning rate rising linearly over ``warmup_steps``, then falling linearly to 0."""
    import torch
    warmup_steps = max(1, warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / warmup_steps, max(0.0, (total_steps - s) / max(1, total_steps - warmup_steps))))


def soft_targets(label_lists, reading: str = "uniform") -> np.ndarray:
    """Probability targets, one row per text: one-hot of its first label (``first``) or
    uniform over its labels, so a line annotated with several emotions keeps them all."""
    t = np.zeros((len(label_lists), len(LABELS)), np.float32)
    for row, labels in zip(t, label_lists):
        if reading == "first":
            row[labels[0]] = 1
        else:
            row[labels] = 1 / len(labels)
    return t
