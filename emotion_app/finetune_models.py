"""How each architecture is fine-tuned: which member of an ensemble, batches to logits,
what is trained and what is saved, and each modality's own validation set.

A fine-tune starts from the active model. When that is an ensemble, its strongest member
(card validation weighted F1) whose architecture appears in ``TUNERS`` is trained — the
MiniLM encoder for text (TF-IDF is not fine-tuned), MobileNetV2 for faces (the strongest
and smallest image member), the Whisper-encoder head or the log-mel CRNN for speech —
and the other members are kept as they are.
"""
from __future__ import annotations

import copy

import numpy as np

from .registry import Model, ModelEntry, create_model, get_entry


class Tuner:
    """One family of architectures; subclasses say how a batch becomes logits."""

    lr = 1e-4
    weight_decay = 0.01
    batch_size = 32
    inference_on_cpu = False  # the model's predict_proba builds CPU tensors

    def network(self, model: Model):
        return model.net

    def to_device(self, model: Model, device) -> None:
        self.network(model).to(device)
        model.device = device

    def featurize(self, model: Model, examples: list) -> list:
        """What ``logits`` reads per example (computed once, before training)."""
        return examples

    def logits(self, model: Model, batch: list, device, generator, rng):
        raise NotImplementedError

    def tensors(self, model: Model) -> dict:
        """The state dict as the model folder stores it (fp16)."""
        return {k: v.detach().half().cpu().contiguous() if v.is_floating_point() else v.cpu().contiguous()
                for k, v in self.network(model).state_dict().items()}


class TextTuner(Tuner):
    """MiniLM: the word embeddings stay frozen (they are read from the base package)."""

    lr = 3e-5
    batch_size = 16

    def network(self, model):
        from .text_encoder import FROZEN_KEY
        network = model.network
        dict(network.named_parameters())[FROZEN_KEY].requires_grad_(False)
        return network

    def logits(self, model, batch, device, generator, rng):
        from .text_encoder import encode
        tokens = encode(model.tokenizer, batch, max_tokens=model.max_tokens)
        return model.network(**{k: v.to(device) for k, v in tokens.items()})

    def tensors(self, model):
        from .text_encoder import trained_tensors
        return trained_tensors(model.network)


class FaceTuner(Tuner):
    """Gray 48x48 crops, augmented on the device as in ``training.image``."""

    lr = 1e-4
    weight_decay = 0.05

    def network(self, model):
        """The stored network, rebuilt once: loading folds BatchNorm into the convolutions
        for speed, and a folded network can be neither trained nor saved in the folder's layout."""
        if not getattr(model, "trainable", False):
            from safetensors.torch import load_file

            from .image import build_network, load_state
            net = build_network(model.entry.architecture, model.size)
            load_state(net, load_file(str(model.entry.folder / "model.safetensors")))
            model.net, model.trainable = net.eval().to(model.device), True
        return model.net

    def logits(self, model, batch, device, generator, rng):
        import torch
        from training.image import augment
        gray = torch.from_numpy(np.stack(batch)).to(device)
        return model.net(augment(gray, model.size, generator))

    def tensors(self, model):
        from training.image import fp16_tensors
        return fp16_tensors(model.net)


class SpeechTuner(Tuner):
    """Per-frame features computed once per clip; each step reads a random 60-100 %
    window, capped as in ``training.audio``."""

    lr = 3e-4
    inference_on_cpu = True

    def to_device(self, model, device):
        model.net.to(device)

    def featurize(self, model, examples):
        return [np.asarray(model.features(wave), dtype=np.float32) for wave in examples]

    def logits(self, model, batch, device, generator, rng):
        import torch
        from training.audio import MEMBERS
        max_frames = next(m["max_frames"] for m in MEMBERS.values() if m["architecture"] == model.entry.architecture)
        windows = []
        for frames in batch:
            keep = min(max_frames, max(1, int(len(frames) * rng.uniform(0.6, 1.0))))
            start = rng.integers(0, len(frames) - keep + 1)
            windows.append(torch.from_numpy(frames[start:start + keep]))
        lengths = torch.tensor([len(w) for w in windows])
        x = torch.nn.utils.rnn.pad_sequence(windows, batch_first=True)
        return model.net(x.to(device), lengths.to(device))


TUNERS = {"minilm-classifier": TextTuner(), "mobilenet-v2": FaceTuner(), "efficientnet-lite0": FaceTuner(),
          "fer-vgg": FaceTuner(), "whisper-encoder-attn": SpeechTuner(), "logmel-crnn": SpeechTuner()}


def members_of(entry: ModelEntry) -> list[tuple[ModelEntry, float]]:
    """An ensemble's members with their weights; a single model is its own only member."""
    if entry.architecture == "ensemble":
        return [(get_entry(m["id"]), float(m["weight"])) for m in entry.config["members"]]
    return [(entry, 1.0)]


def member_to_tune(entry: ModelEntry) -> ModelEntry:
    tunable = [m for m, _ in members_of(entry) if m.architecture in TUNERS]
    if not tunable:
        raise ValueError(f"{entry.ref} cannot be fine-tuned here: no member has one of the architectures "
                         f"{', '.join(sorted(TUNERS))}")
    return max(tunable, key=lambda m: m.validation_f1)


def fresh_model(entry: ModelEntry) -> Model:
    """A private copy of the loaded model: training must not change the registry's cached one."""
    return copy.deepcopy(create_model(entry.ref))


def lineage_id(model_id: str) -> str:
    """Fine-tunes of ``x`` (and of ``x-ft``) are versions of ``x-ft``: an ensemble that
    names ``x`` without a version keeps meaning the model it was built with."""
    return model_id if model_id.endswith("-ft") else f"{model_id}-ft"


# --- each modality's own validation set ------------------------------------------------------

def _sample(examples: list, labels: list, limit: int | None, seed: int) -> tuple[list, np.ndarray]:
    labels = np.asarray(labels)
    if limit and len(labels) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
        return [examples[i] for i in keep], labels[keep]
    return list(examples), labels


def own_validation(modality: str, limit: int | None, seed: int = 0) -> dict[str, tuple[list, np.ndarray]]:
    """A seeded sample of at most ``limit`` examples of each of the modality's own
    validation sets: the text corpora's dev splits, FER-2013 PublicTest, and the RAVDESS
    actor the shipped speech models never train on. Empty when the shared data is absent."""
    from training.data import data_root
    try:
        data_root()
    except FileNotFoundError:
        return {}
    if modality == "text":
        from training.data import TEXT_SPLITS, text_split
        return {f"{corpus}_dev": _sample(*text_split(corpus, "dev"), limit, seed) for corpus in TEXT_SPLITS}
    if modality == "image":
        from training.image import VALIDATION, load_fer
        images, labels = load_fer("publictest")
        return {VALIDATION: _sample(list(images), labels, limit, seed)}
    from training.audio import SANITY_SPEAKERS, speech_corpus

    from .finetune_data import prepare_speech
    from .inputs import InputError
    clips = [c for c in speech_corpus() if c["speaker"] in SANITY_SPEAKERS]
    paths, labels = _sample([c["path"] for c in clips], [c["label"] for c in clips], limit, seed)
    waves, kept = [], []
    for path, label in zip(paths, labels):
        try:
            waves.append(prepare_speech(path)[0])
            kept.append(label)
        except InputError:  # as in prediction, a clip without enough speech is not scored
            continue
    return {f"{'+'.join(SANITY_SPEAKERS)}_unseen_speaker": (waves, np.asarray(kept))}
