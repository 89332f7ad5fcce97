"""The result shape every pipeline returns, made in one place.

``{"input", "label", "probs": {all seven}, "model": "id@version", ...}`` for an input
that was classified, ``{"input", "error"}`` for one that was not.
"""
from __future__ import annotations

import numpy as np

from .labels import LABELS


def as_vector(probs) -> np.ndarray:
    """Seven probabilities, from a ``{label: p}`` dict or a sequence, as an array in LABELS order."""
    if isinstance(probs, dict):
        return np.array([probs[label] for label in LABELS], dtype=float)
    return np.asarray(probs, dtype=float)


def label_probs(probs) -> dict:
    """``{"label", "probs"}`` for seven probabilities: the one place their JSON shape is made."""
    probs = np.asarray(probs, dtype=float)
    return {"label": LABELS[int(probs.argmax())],
            "probs": {label: round(float(p), 6) for label, p in zip(LABELS, probs)}}


def make_result(input_, probs: np.ndarray, model_ref: str, **extra) -> dict:
    return {"input": input_, **label_probs(probs), "model": model_ref, **extra}


def error_result(input_, error: Exception | str) -> dict:
    return {"input": input_, "error": str(error)}
