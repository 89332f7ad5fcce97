"""A model folder as the registry knows it (``ModelEntry``), and what every loaded
model offers, whatever its modality or architecture (``Model``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.calibration import apply_temperature


@dataclass(frozen=True)
class ModelEntry:
    """One model folder: its config and its metrics card, read once when it is found.

    ``metrics.json`` names two of its evaluations: ``validation``, the held-out set whose
    weighted F1 is the model's fusion weight and ensemble weight, and ``headline``, the
    one the registry shows first."""

    id: str
    modality: str
    version: str
    architecture: str
    folder: Path
    config: dict = field(hash=False, compare=False)
    metrics: dict = field(default_factory=dict, hash=False, compare=False)
    hub_repo: str | None = None
    source: str = "bundled"  # bundled | user | hub

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def evaluation(self, role: str) -> tuple[str, dict] | None:
        """``(name, metrics)`` of the evaluation the card names for ``role``
        (``validation`` or ``headline``), or None when it names none."""
        name = self.metrics.get(role)
        evaluations = self.metrics.get("evaluations", {})
        return (name, evaluations[name]) if name in evaluations else None

    @property
    def validation_f1(self) -> float:
        """Weighted F1 on the card's ``validation`` set: what fusion weights rest on."""
        validation = self.evaluation("validation")
        return float(validation[1]["weighted_f1"]) if validation else 0.0


class Model:
    """What every loaded model offers: probabilities over LABELS for a batch of inputs."""

    entry: ModelEntry

    def predict_proba(self, batch) -> np.ndarray:  # (len(batch), 7)
        raise NotImplementedError

    @property
    def calibration(self) -> dict | None:
        """The config's ``calibration`` (temperature, uncertainty threshold), or None."""
        return self.entry.config.get("calibration")

    def calibrated_proba(self, batch) -> np.ndarray:
        """``predict_proba`` temperature-scaled as ``calibration`` says: the
        probabilities the pipelines serve (``core.calibration``)."""
        probs = self.predict_proba(batch)
        calibration = self.calibration
        return apply_temperature(probs, calibration["temperature"]) if calibration and len(probs) else probs

    def certainty(self, probs) -> dict:
        """``{"uncertain": bool}`` for one input's calibrated probabilities (top probability
        below ``calibration``'s ``uncertain_below``); ``{}`` for a model with no calibration."""
        calibration = self.calibration
        if not calibration:
            return {}
        return {"uncertain": bool(float(np.max(probs)) < calibration["uncertain_below"])}

    embedding_dim: int | None = None  # the size of ``embed``'s vectors; None: no embedding

    def embed(self, batch) -> np.ndarray:  # (len(batch), embedding_dim)
        """Pre-logits embeddings (the input of the final linear layer), what learned
        fusion reads; averaged over test-time views as the probabilities are."""
        raise NotImplementedError(f"{self.entry.ref} offers no embedding")

    def reading_notes(self, item) -> list[str]:
        """What the model will not see of one input (e.g. text past its token window)."""
        return []


def load_weights(net, tensors: dict, allow_missing: tuple[str, ...] = ()) -> None:
    """Load stored (fp16) tensors into a float32 network. Only BatchNorm counters and
    the keys in ``allow_missing`` (e.g. embeddings read from elsewhere) may be absent."""
    missing, unexpected = net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked") and k not in allow_missing]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the network: missing {missing[:5]}, unexpected {unexpected[:5]}")
