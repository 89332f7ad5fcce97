"""Intra-modal ensembles (TERT-Ensemble): a weighted average of member probabilities.

The weights are each member's validation weighted F1 (or a search on held-out data),
normalised to sum to 1; they live in the ensemble's config so the registry shows exactly
what is averaged. An optional ``cascade`` lets one fast member answer alone where it is
sure: ``{"first_member": i, "answers_alone_from": t}`` runs ``members[i]`` on every input
and the other members only on inputs whose top probability from it is below ``t`` (the
face ensemble: most faces need one network of four, see its card).
"""
from __future__ import annotations

import numpy as np

from .base import Model, ModelEntry
from .registry import create_model, register_architecture


def f1_weights(scores: dict[str, float]) -> list[dict]:
    """Members with weights proportional to their validation weighted F1."""
    total = sum(scores.values())
    return [{"id": model_id, "weight": score / total} for model_id, score in scores.items()]


def answered_alone(first_probs: np.ndarray, cascade: dict | None) -> np.ndarray:
    """Which inputs the cascade's first member answers alone (all False without a cascade)."""
    if not cascade:
        return np.zeros(len(first_probs), dtype=bool)
    return first_probs.max(axis=1) >= cascade["answers_alone_from"]


def combine(member_probs: list[np.ndarray], weights: list[float], cascade: dict | None = None) -> np.ndarray:
    """What the ensemble answers, from every member's probabilities on the same inputs:
    the weighted average, or under a cascade the first member's own probabilities where
    it is sure. Scoring code (training, fine-tuning) uses this to score what is served."""
    average = sum(w * p for p, w in zip(member_probs, weights))
    if not cascade:
        return average
    first = member_probs[cascade["first_member"]]
    alone = answered_alone(first, cascade)
    return np.where(alone[:, None], first, average)


class Ensemble(Model):
    def __init__(self, members: list[tuple[Model, float]], cascade: dict | None = None):
        if cascade and not 0 <= cascade["first_member"] < len(members):
            raise ValueError(f"cascade names member {cascade['first_member']} of {len(members)}")
        self.members, self.cascade = members, cascade

    def predict_proba(self, batch) -> np.ndarray:
        if not self.cascade:
            return combine([model.predict_proba(batch) for model, _ in self.members],
                           [weight for _, weight in self.members])
        first_index = self.cascade["first_member"]
        first_model, first_weight = self.members[first_index]
        first = first_model.predict_proba(batch)
        unsure = np.flatnonzero(~answered_alone(first, self.cascade))
        out = first.copy()
        if len(unsure):
            rest = [batch[i] for i in unsure]
            out[unsure] = first_weight * first[unsure] + sum(
                weight * model.predict_proba(rest) for i, (model, weight) in enumerate(self.members) if i != first_index)
        return out

    def reading_notes(self, item) -> list[str]:
        return [note for model, _ in self.members for note in model.reading_notes(item)]


@register_architecture("ensemble")
def load_ensemble(entry: ModelEntry) -> Ensemble:
    return Ensemble([(create_model(m["id"]), float(m["weight"])) for m in entry.config["members"]],
                    entry.config.get("cascade"))
