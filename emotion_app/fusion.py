"""Fusion of face, voice and text emotion, five ways behind one call: ``fuse(method, ...)``.

Weighted late fusion (TERT-Ensemble) is the default: each modality's probabilities are
averaged with weights from its model's validation weighted F1, normalised over the
modalities that are present, so a missing modality simply drops out. Users may override
the weights (the Tri-modal tab's sliders).

The four learned methods read one feature vector per modality: the penultimate
activations (the input of the final 7-way linear layer) of one fixed source model per
modality, named with its dimension in the fusion model's config (``inputs``). A source
model without such a layer (e.g. the TF-IDF text model) gives its 7 probabilities
instead, and the config says ``"kind": "probs"``. Each network is trained with whole
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

import threading

import numpy as np

from .labels import LABELS
from .pipeline import label_probs
from .registry import (Model, ModelEntry, ModelNotFound, active_model, create_model, get_entry,
                       register_architecture)

IMAGE, AUDIO, TEXT = "image", "audio", "text"
FUSED_MODALITIES = (IMAGE, AUDIO, TEXT)
# method name -> registry id of its model folder
METHODS = {"late": "fusion-late", "concat": "fusion-concat-mlp", "gated": "fusion-gated",
           "mrpn": "fusion-mrpn", "embracenet": "fusion-embracenet"}


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
    return {**label_probs(fused), "weights": {m: round(w / total, 4) for m, w in used.items()}}


# --- one interface ----------------------------------------------------------------------

def fusion_model(method: str) -> FusionModel:
    """The fusion model for a method name (``late``, ``concat``...) or a registry id."""
    try:
        entry = get_entry(METHODS.get(method, method))
    except ModelNotFound as exc:
        raise ModelNotFound(f"unknown fusion method {method!r}; expected one of {', '.join(METHODS)} "
                            f"or a fusion model's id ({exc})") from exc
    if entry.modality != "fusion":
        raise ValueError(f"{entry.ref} is a model for {entry.modality}, not fusion")
    return create_model(entry.ref)


def needs_features(method: str) -> bool:
    """Whether the method reads modality features (all but late fusion)."""
    return bool(fusion_model(method).inputs)


def modality_features(method: str, modality: str, batch) -> np.ndarray:
    """(N, dim) features of raw inputs (face crops, speech waves or texts) for ``method``."""
    spec = fusion_model(method).inputs[modality]
    model = create_model(spec["source"])
    return penultimate(model, batch) if spec["kind"] == "embedding" else model.predict_proba(list(batch))


def input_features(method: str, image=None, text=None, audio=None) -> dict[str, np.ndarray]:
    """Fusion features of one photo, text and voice clip (the Tri-modal tab's inputs):
    the photo's largest face (the whole photo if none is found, as the image pipeline
    does), the text, the clip's speech. Empty inputs are left out; a bad one raises
    InputError."""
    out = {}
    if image:
        from .faces import detect_faces
        from .image import load_image
        rgb = load_image(image)
        faces = detect_faces(rgb)
        out[IMAGE] = modality_features(method, IMAGE, [faces[0].crop if faces else rgb])[0]
    if text is not None and str(text).strip():
        from .text import prepare_text
        out[TEXT] = modality_features(method, TEXT, [prepare_text(text)[0]])[0]
    if audio:  # the speech segments the voice pipeline classifies, weighted by length
        from .audio import analyse_wave
        from .audio_io import load_audio
        wave = load_audio(audio)
        pieces = speech_pieces(wave, analyse_wave(str(audio), wave, create_model(active_model(AUDIO).ref),
                                                  transcribe=False)["segments"])
        out[AUDIO] = np.average(modality_features(method, AUDIO, pieces), axis=0, weights=[len(p) for p in pieces])
    return out


def speech_pieces(wave: np.ndarray, segments: list[dict]) -> list[np.ndarray]:
    """The waves of a voice result's speech segments (``start``/``end`` in seconds)."""
    from .audio_io import SAMPLE_RATE
    return [wave[int(s["start"] * SAMPLE_RATE):int(s["end"] * SAMPLE_RATE)] for s in segments]


def fuse(method: str, probs_by_modality: dict, features_by_modality: dict | None = None,
         weights: dict | None = None) -> dict:
    """Fuse one example's modalities: ``{"label", "probs", "model"}`` (+ ``"weights"`` for
    late fusion). ``probs_by_modality`` maps image/audio/text to 7 probabilities; learned
    methods read ``features_by_modality`` (see ``modality_features``) instead; ``weights``
    override late fusion's defaults. A modality that is absent is left out."""
    model = fusion_model(method)
    if not model.inputs:
        return {**late_fusion(probs_by_modality, weights), "model": model.entry.ref}
    probs = model.predict_proba([features_by_modality or {}])[0]
    return {**label_probs(probs), "model": model.entry.ref}


class FusionModel(Model):
    """``predict_proba`` takes a batch of ``{modality: probabilities or features}`` dicts;
    ``inputs`` names the features each modality gives (none for late fusion)."""

    inputs: dict


class LateFusion(FusionModel):
    def __init__(self):
        self.inputs = {}

    def predict_proba(self, batch) -> np.ndarray:
        return np.stack([as_vector(late_fusion(probs)["probs"]) for probs in batch])


@register_architecture("late-fusion")
def load_late_fusion(entry: ModelEntry) -> LateFusion:
    return LateFusion()


# --- embeddings ---------------------------------------------------------------------------

def torch_network(model: Model):
    """The torch network inside a loaded model, or None (e.g. a TF-IDF model)."""
    from torch import nn
    return next((v for v in vars(model).values() if isinstance(v, nn.Module)), None)


def classifier_layer(model: Model):
    """The network's final 7-way linear layer, whose input is the model's embedding."""
    from torch import nn
    net = torch_network(model)
    if net is None:
        return None
    linears = [m for m in net.modules() if isinstance(m, nn.Linear) and m.out_features == len(LABELS)]
    return linears[-1] if linears else None


def penultimate(model: Model, batch, chunk: int = 64) -> np.ndarray:
    """(N, dim) inputs of the final linear layer while the model predicts ``batch``.

    A model may reorder a batch inside (e.g. sort texts by length): each captured row
    is matched back to its input by its softmax output, which equals the probabilities
    the model returns for that input. Where the layer ran more than once per input
    (test-time flips), inputs go one at a time and the views' embeddings are averaged."""
    layer = classifier_layer(model)
    if layer is None:
        raise ValueError(f"{model.entry.ref} has no final linear layer to take an embedding from")
    caller = threading.get_ident()
    inputs: list[np.ndarray] = []
    outputs: list[np.ndarray] = []

    def keep(_module, args, output):
        if threading.get_ident() == caller:  # another thread may be using the same model
            inputs.append(args[0].detach().float().cpu().numpy())
            outputs.append(output.detach().float().cpu().numpy())

    def run(items):
        inputs.clear()
        outputs.clear()
        return model.predict_proba(items), np.concatenate(inputs), np.concatenate(outputs)

    batch, rows, one_at_a_time = list(batch), [], False
    handle = layer.register_forward_hook(keep)
    try:
        for start in range(0, len(batch), chunk):
            items = batch[start:start + chunk]
            if not one_at_a_time:
                probs, x, logits = run(items)
                if len(x) == len(items):
                    z = np.exp(logits - logits.max(axis=1, keepdims=True))
                    z /= z.sum(axis=1, keepdims=True)
                    rows.append(x[np.abs(probs[:, None, :] - z[None]).sum(axis=2).argmin(axis=1)])
                    continue
                one_at_a_time = True
            rows += [run([item])[1].mean(axis=0, keepdims=True) for item in items]
    finally:
        handle.remove()
    return np.concatenate(rows) if rows else np.zeros((0, layer.in_features), np.float32)


def embedding_source(modality: str) -> dict:
    """What a learned fusion reads for a modality: the embedding of the best member
    (validation weighted F1) of the active model that has a final linear layer, else
    the active model's probabilities."""
    entry = active_model(modality)
    members = [get_entry(m["id"]) for m in entry.config.get("members", [])] or [entry]
    for member in sorted(members, key=lambda e: -e.validation_f1):
        layer = classifier_layer(create_model(member.ref))
        if layer is not None:
            return {"source": member.ref, "kind": "embedding", "dim": layer.in_features}
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
