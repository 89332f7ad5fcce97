"""Fusion models of face, voice and text emotion, five methods (``pipelines.fusion.fuse``
runs any of them on one example).

Weighted late fusion (TERT-Ensemble) is the default: each modality's probabilities are
averaged with weights from its model's validation weighted F1, normalised over the
modalities that are present, so a missing modality simply drops out. Users may override
the weights (the Tri-modal tab's sliders).

The four learned methods read one feature vector per modality: the pre-logits
embedding (``Model.embed``, the input of the final 7-way linear layer) of one fixed
source model per modality, named with its dimension in the fusion model's config
(``inputs``). A source model without one (e.g. the TF-IDF text model) gives its 7
probabilities instead, and the config says ``"kind": "probs"``. Each network is trained with whole
modalities dropped at random, and a missing modality enters as zeros with its presence
bit off, so any non-empty subset of modalities can be fused:

- ``concat``: feature concatenation + MLP (MFER).
- ``gated``: ``F = sum_m g_m H_m`` with a softmax gate over the present modalities, the
  three-modality generalisation of ``F = g*Hv + (1-g)*Ht`` (DistilBERT + EfficientNet).
- ``mrpn``: a residual perceptron per modality with its own classifier, and a fusion
  head; trained with L = sum_m L_m + L_fused (MRPN).
- ``embracenet``: docking layers to a shared size; in training, each dimension of the
  fused vector is taken from one present modality drawn at random (multinomial), at
  inference the expectation of that draw is used, so the output is deterministic.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..core.errors import ModelNotFound
from ..core.labels import LABELS
from ..core.results import as_vector, label_probs
from .base import Model, ModelEntry
from .registry import active_model, create_model, get_entry, register_architecture

IMAGE, AUDIO, TEXT = "image", "audio", "text"
FUSED_MODALITIES = (IMAGE, AUDIO, TEXT)
# method name -> registry id of its model folder
METHODS = {"late": "fusion-late", "concat": "fusion-concat-mlp", "gated": "fusion-gated",
           "mrpn": "fusion-mrpn", "embracenet": "fusion-embracenet"}


FUSION = "fusion"
WEIGHT_STEP = 0.05  # grid of fitted late-fusion weights: fine enough, and few clips cannot say more


def default_weights(modalities) -> dict[str, float]:
    """Each modality's active model's validation weighted F1 (image, text, audio)."""
    return {m: active_model(m).validation_f1 for m in modalities}


def late_probs(items: list[dict], weights: dict[str, float] | None = None) -> np.ndarray:
    """(N, 7) late fusion of each item's present modalities (``{modality: probabilities}``)."""
    return np.stack([as_vector(late_fusion(item, weights)["probs"]) for item in items])


def fit_late_weights(items: list[dict], labels, step: float = WEIGHT_STEP) -> dict[str, float]:
    """Late-fusion weights (summing to 1) that maximise the fused log-likelihood of
    ``labels`` on ``items`` (``{modality: probabilities}``, absent modalities left out),
    searched on a grid. Log-likelihood rather than accuracy: on a few dozen clips many
    weightings tie on accuracy. A modality no item has keeps its default share."""
    seen = [m for m in FUSED_MODALITIES if any(item.get(m) is not None for item in items)]
    if not seen:
        raise ValueError("no modality to fit late-fusion weights on")
    defaults = default_weights(FUSED_MODALITIES)
    unseen = sum(defaults[m] for m in FUSED_MODALITIES if m not in seen) / sum(defaults.values())
    labels = np.asarray(labels)
    steps = round(1 / step)
    best, best_ll = None, -np.inf
    for cut in itertools.product(range(1, steps + 1), repeat=len(seen) - 1):
        if sum(cut) >= steps:
            continue
        shares = [c / steps for c in cut] + [1 - sum(cut) / steps]
        weights = {m: s * (1 - unseen) for m, s in zip(seen, shares)}
        probs = late_probs(items, weights)
        ll = float(np.log(probs[np.arange(len(labels)), labels] + 1e-6).mean())
        if ll > best_ll + 1e-9:
            best, best_ll = weights, ll
    weights = best or {m: 1 - unseen for m in seen}
    weights.update({m: defaults[m] / sum(defaults.values()) for m in FUSED_MODALITIES if m not in seen})
    return {m: round(w, 4) for m, w in weights.items()}


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
    return {**label_probs(fused), "weights": {m: round(w / total, 4) for m, w in used.items()}}


def method_of(model_id: str) -> str | None:
    """The fusion method a fusion model serves: its own, or the one it fine-tunes (``<id>-ft``)."""
    return next((method for method, ref in METHODS.items() if model_id in (ref, f"{ref}-ft")), None)


def fusion_model(method: str) -> FusionModel:
    """The fusion model for a method name (``late``, ``concat``...) or a registry id. A
    method name means the active fusion model when that serves the method (a version of
    the method's model, or a fine-tune of it named ``<id>-ft`` as fine-tune jobs name
    them), else the method's bundled model."""
    ref = METHODS.get(method, method)
    if method in METHODS:
        chosen = active_model(FUSION)
        if method_of(chosen.id) == method:
            ref = chosen.ref
    try:
        entry = get_entry(ref)
    except ModelNotFound as exc:
        raise ModelNotFound(f"unknown fusion method {method!r}; expected one of {', '.join(METHODS)} "
                            f"or a fusion model's id ({exc})") from exc
    if entry.modality != "fusion":
        raise ValueError(f"{entry.ref} is a model for {entry.modality}, not fusion")
    return create_model(entry.ref)


class FusionModel(Model):
    """``predict_proba`` takes a batch of ``{modality: probabilities or features}`` dicts;
    ``inputs`` names the features each modality gives (none for late fusion)."""

    inputs: dict


class LateFusion(FusionModel):
    """Weights from the config's ``weights`` when they were fitted, else each modality's
    model's validation weighted F1."""

    def __init__(self, weights: dict[str, float] | None = None):
        self.inputs, self.weights = {}, weights

    def predict_proba(self, batch) -> np.ndarray:
        return late_probs(list(batch), self.weights)


@register_architecture("late-fusion")
def load_late_fusion(entry: ModelEntry) -> LateFusion:
    return LateFusion(entry.config.get("weights"))


def embedding_source(modality: str) -> dict:
    """What a learned fusion reads for a modality: the embedding of the best member
    (validation weighted F1) of the active model that offers one (``Model.embed``),
    else the active model's probabilities."""
    entry = active_model(modality)
    members = [get_entry(m["id"]) for m in entry.config.get("members", [])] or [entry]
    for member in sorted(members, key=lambda e: -e.validation_f1):
        dim = create_model(member.ref).embedding_dim
        if dim is not None:
            return {"source": member.ref, "kind": "embedding", "dim": dim}
    return {"source": entry.ref, "kind": "probs", "dim": len(LABELS)}


# --- learned fusion networks --------------------------------------------------------------

def _networks():
    """The four fusion networks; defined on first use so importing this module never
    pays for torch. Each takes ``xs`` (one (B, dim) tensor per modality, zeros where
    absent) and ``mask`` (B, M) and returns fused logits; MRPN also per-modality logits."""
    import torch
    from torch import nn

    def block(d_in, d_out, dropout):
        return nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.GELU(), nn.Dropout(dropout))

    class ConcatMLP(nn.Module):
        def __init__(self, dims, hidden=256, dropout=0.3):
            super().__init__()
            self.mlp = nn.Sequential(block(sum(dims) + len(dims), hidden, dropout), block(hidden, hidden // 2, dropout),
                                     nn.Linear(hidden // 2, len(LABELS)))

        def forward(self, xs, mask):
            return self.mlp(torch.cat([*xs, mask.float()], dim=1))

    class GatedFusion(nn.Module):
        def __init__(self, dims, hidden=128, dropout=0.3):
            super().__init__()
            self.project = nn.ModuleList(nn.Sequential(nn.Dropout(dropout), nn.Linear(d, hidden), nn.Tanh())
                                         for d in dims)
            self.gate = nn.Linear(hidden * len(dims), len(dims))
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, len(LABELS)))

        def forward(self, xs, mask):
            h = torch.stack([p(x) for p, x in zip(self.project, xs)], dim=1) * mask.unsqueeze(-1)
            g = self.gate(h.flatten(1)).masked_fill(~mask, float("-inf")).softmax(dim=1)
            return self.head((g.unsqueeze(-1) * h).sum(dim=1))

    class ResidualPerceptron(nn.Module):
        def __init__(self, d_in, hidden, dropout):
            super().__init__()
            self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, hidden))
            self.residual = nn.Sequential(nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout),
                                          nn.Linear(hidden, hidden))

        def forward(self, x):
            h = self.project(x)
            return h + self.residual(h)

    class MRPN(nn.Module):
        def __init__(self, dims, hidden=128, dropout=0.3):
            super().__init__()
            self.perceptrons = nn.ModuleList(ResidualPerceptron(d, hidden, dropout) for d in dims)
            self.heads = nn.ModuleList(nn.Linear(hidden, len(LABELS)) for _ in dims)
            self.fusion = nn.Sequential(block(hidden * len(dims), hidden, dropout), nn.Linear(hidden, len(LABELS)))

        def forward(self, xs, mask, per_modality=False):
            hs = [p(x) * mask[:, i:i + 1] for i, (p, x) in enumerate(zip(self.perceptrons, xs))]
            fused = self.fusion(torch.cat(hs, dim=1))
            return (fused, [head(h) for head, h in zip(self.heads, hs)]) if per_modality else fused

    class EmbraceNet(nn.Module):
        def __init__(self, dims, hidden=256, dropout=0.3):
            super().__init__()
            self.docking = nn.ModuleList(nn.Sequential(nn.Dropout(dropout), nn.Linear(d, hidden), nn.ReLU())
                                         for d in dims)
            self.head = nn.Sequential(block(hidden, hidden // 2, dropout), nn.Linear(hidden // 2, len(LABELS)))

        def forward(self, xs, mask):
            docked = torch.stack([d(x) for d, x in zip(self.docking, xs)], dim=1)  # (B, M, hidden)
            p = mask.float() / mask.float().sum(dim=1, keepdim=True)
            if self.training:  # each dimension from one present modality, drawn with probabilities p
                choice = torch.multinomial(p, docked.shape[-1], replacement=True)  # (B, hidden)
                selected = nn.functional.one_hot(choice, len(xs)).transpose(1, 2).float()
            else:
                selected = p.unsqueeze(-1)
            return self.head((selected * docked).sum(dim=1))

    return {"concat-mlp": ConcatMLP, "gated": GatedFusion, "mrpn": MRPN, "embracenet": EmbraceNet}


FUSION_NETWORKS = ("concat-mlp", "gated", "mrpn", "embracenet")


def build_fusion_network(architecture: str, dims: list[int], **params):
    return _networks()[architecture](dims, **params)


class LearnedFusion(FusionModel):
    """A fusion network with per-modality feature standardisation (train mean and std)."""

    def __init__(self, net, inputs: dict, mean: dict, std: dict):
        self.net, self.inputs, self.mean, self.std = net.eval(), inputs, mean, std

    def tensors(self, batch):
        """Standardised features (zeros where absent) and the (B, M) presence mask."""
        import torch
        xs, mask = [], []
        for m in FUSED_MODALITIES:
            dim = self.inputs[m]["dim"]
            present = [item.get(m) is not None for item in batch]
            x = np.stack([(np.asarray(item[m], np.float32) - self.mean[m]) / self.std[m] if ok
                          else np.zeros(dim, np.float32) for item, ok in zip(batch, present)])
            xs.append(torch.from_numpy(x.astype(np.float32)))
            mask.append(present)
        return xs, torch.tensor(mask).T.reshape(len(batch), len(FUSED_MODALITIES))

    def predict_proba(self, batch) -> np.ndarray:
        import torch
        if any(not any(item.get(m) is not None for m in FUSED_MODALITIES) for item in batch):
            raise ValueError("no modality to fuse: give at least one input")
        xs, mask = self.tensors(list(batch))
        with torch.inference_mode():
            return self.net(xs, mask).softmax(dim=-1).numpy()


def _load_learned_fusion(entry: ModelEntry) -> LearnedFusion:
    from safetensors.torch import load_file
    inputs = entry.config["inputs"]
    tensors = load_file(str(entry.folder / "model.safetensors"))
    net = build_fusion_network(entry.architecture, [inputs[m]["dim"] for m in FUSED_MODALITIES],
                               **entry.config.get("net", {}))
    net.load_state_dict({k.removeprefix("net."): v.float() for k, v in tensors.items() if k.startswith("net.")})
    mean = {m: tensors[f"mean.{m}"].float().numpy() for m in FUSED_MODALITIES}
    std = {m: tensors[f"std.{m}"].float().numpy() for m in FUSED_MODALITIES}
    return LearnedFusion(net, inputs, mean, std)


for _architecture in FUSION_NETWORKS:
    register_architecture(_architecture)(_load_learned_fusion)
