"""Fusion of per-modality emotion probabilities.

Weighted late fusion (TERT-Ensemble) is the default: each modality's probabilities are
averaged with weights from its model's validation weighted F1, normalised over the
modalities that are present, so a missing modality simply drops out. Users may override
the weights (the Tri-modal tab's sliders).
"""
from __future__ import annotations

import numpy as np

from .labels import LABELS
from .registry import active_model


def as_vector(probs) -> np.ndarray:
    if isinstance(probs, dict):
        return np.array([probs[label] for label in LABELS], dtype=float)
    return np.asarray(probs, dtype=float)


def default_weights(modalities) -> dict[str, float]:
    """Each modality's active model's validation weighted F1 (image, text, audio)."""
    return {m: active_model(m).validation_f1 for m in modalities}


def late_fusion(probs_by_modality: dict[str, dict], weights: dict[str, float] | None = None) -> dict:
    """Weighted average of the present modalities' probabilities.

    Returns ``{"label", "probs", "weights"}`` with the normalised weights actually used;
    modalities with weight 0 or no probabilities are left out."""
    present = {m: p for m, p in probs_by_modality.items() if p is not None}
    if not present:
        raise ValueError("no modality to fuse: give at least one input")
    weights = weights or default_weights(present)
    used = {m: float(weights.get(m, 0.0)) for m in present if weights.get(m, 0.0) > 0}
    if not used:
        raise ValueError("every present modality has weight 0: raise at least one slider")
    total = sum(used.values())
    fused = sum(w / total * as_vector(present[m]) for m, w in used.items())
    return {"label": LABELS[int(np.argmax(fused))],
            "probs": {label: round(float(p), 6) for label, p in zip(LABELS, fused)},
            "weights": {m: round(w / total, 4) for m, w in used.items()}}
