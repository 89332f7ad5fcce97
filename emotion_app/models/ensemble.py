"""Intra-modal ensembles (TERT-Ensemble): a weighted average of member probabilities.

The weights are each member's validation weighted F1, normalised to sum to 1; they
live in the ensemble's config so the registry shows exactly what is averaged.
"""
from __future__ import annotations

import numpy as np

from .base import Model, ModelEntry
from .registry import create_model, register_architecture


def f1_weights(scores: dict[str, float]) -> list[dict]:
    """Members with weights proportional to their validation weighted F1."""
    total = sum(scores.values())
    return [{"id": model_id, "weight": score / total} for model_id, score in scores.items()]


class Ensemble(Model):
    def __init__(self, members: list[tuple[Model, float]]):
        self.members = members

    def predict_proba(self, batch) -> np.ndarray:
        return sum(weight * model.predict_proba(batch) for model, weight in self.members)

    def reading_notes(self, item) -> list[str]:
        return [note for model, _ in self.members for note in model.reading_notes(item)]


@register_architecture("ensemble")
def load_ensemble(entry: ModelEntry) -> Ensemble:
    return Ensemble([(create_model(m["id"]), float(m["weight"])) for m in entry.config["members"]])
