"""How each architecture is fine-tuned: which member of an ensemble, batches to logits,
what is trained and what is saved, and each modality's own validation set.

A fine-tune starts from the active model. When that is an ensemble, its strongest member
(card validation weighted F1) whose architecture appears in ``TUNERS`` is trained — the
MiniLM encoder for text (TF-IDF is not fine-tuned), MobileNetV2 for faces (the strongest
and smallest image member), the Whisper-layer head, the Whisper-encoder head or the
log-mel CRNN for speech —
and the other members are kept as they are.
"""
from __future__ import annotations

import copy

import numpy as np

from ..models.base import Model, ModelEntry
from ..models.registry import create_model, get_entry
from ..train.export import fp16_state


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
        return fp16_state(self.network(model))


class TextTuner(Tuner):
    """MiniLM: the word embeddings stay frozen (they are read from the base package)."""

    lr = 3e-5
    batch_size = 16

    def network(self, model):
        from ..models.text_encoder import FROZEN_KEY
        network = model.network
        dict(network.named_parameters())[FROZEN_KEY].requires_grad_(False)
        return network

    def logits(self, model, batch, device, generator, rng):
        from ..models.text_encoder import encode
        tokens = encode(model.tokenizer, batch, max_tokens=model.max_tokens)
        return model.network(**{k: v.to(device) for k, v in tokens.items()})

    def tensors(self, model):
        from ..models.text_encoder import FROZEN_KEY
        return fp16_state(model.network, exclude=(FROZEN_KEY,))


class FaceTuner(Tuner):
    """Face crops read as the member reads them (gray 48x48, or colour at its input size),
    augmented on the device as in training (``train.augment``)."""

    lr = 1e-4
    weight_decay = 0.05

    def network(self, model):
        """The stored network, rebuilt once: loading folds BatchNorm into the convolutions
        for speed, and a folded network can be neither trained nor saved in the folder's layout."""
        if not getattr(model, "trainable", False):
            from safetensors.torch import load_file

            from ..models.base import load_weights
            from ..models.image import build_network
            net = build_network(model.entry.config)
            load_weights(net, load_file(str(model.entry.folder / "model.safetensors")))
            model.net, model.trainable = net.eval().to(model.device), True
        return model.net

    def featurize(self, model, examples):
        from ..models.image import rgb_batch_to_input, to_fer_gray
        if model.input_mode == "rgb":
            return list(rgb_batch_to_input(examples, model.size).numpy())
        return [to_fer_gray(crop) for crop in examples]

    def logits(self, model, batch, device, generator, rng):
        import torch

        from ..train.augment import augment_faces
        faces = torch.from_numpy(np.stack(batch)).to(device)
        return model.net(augment_faces(faces, model.size, generator))


class SpeechTuner(Tuner):
    """Per-frame features computed once per clip; each step reads a random 60-100 %
    window, as in training (``train.augment.random_window``)."""

    lr = 3e-4
    inference_on_cpu = True

    def to_device(self, model, device):
        model.net.to(device)

    def featurize(self, model, examples):
        return [np.asarray(model.features(wave), dtype=np.float32) for wave in examples]

    def logits(self, model, batch, device, generator, rng):
        import torch

        from ..train.augment import random_window
        windows = []
        for frames in batch:
            start, keep = random_window(len(frames), rng)
            windows.append(torch.from_numpy(frames[start:start + keep]))
        lengths = torch.tensor([len(w) for w in windows])
        x = torch.nn.utils.rnn.pad_sequence(windows, batch_first=True)
        return model.net(x.to(device), lengths.to(device))


class LayerStatsTuner(Tuner):
    """The Whisper-layer head: each segment's layer statistics computed once (the
    encoder stays frozen), the head's mixing weights and MLP trained."""

    lr = 3e-4
    inference_on_cpu = True

    def network(self, model):
        return model.head

    def featurize(self, model, examples):
        return list(model.features(examples).numpy())

    def logits(self, model, batch, device, generator, rng):
        import torch
        return model.head(torch.from_numpy(np.stack(batch)).to(device))

    def tensors(self, model):
        """The head, and the input standardisation under ``norm.`` as the folder stores it;
        a speaker head, which fine-tuning does not train, is carried over as it was."""
        import torch
        speaker = {f"speaker.{k}": v for k, v in fp16_state(model.speaker_head).items()} if model.speaker_head else {}
        return {**fp16_state(model.head), "norm.mean": torch.from_numpy(np.asarray(model.mean, np.float32)),
                "norm.std": torch.from_numpy(np.asarray(model.std, np.float32)), **speaker}


TUNERS = {"minilm-classifier": TextTuner(), "timm": FaceTuner(), "fer-vgg": FaceTuner(),
          "whisper-encoder-attn": SpeechTuner(), "logmel-crnn": SpeechTuner(), "whisper-layers-mlp": LayerStatsTuner()}


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
    from ..train.datasets import (
        FER_VALIDATION,
        SANITY_SPEAKERS,
        TEXT_SPLITS,
        data_root,
        load_fer,
        speech_corpus,
        text_split,
    )
    try:
        data_root()
    except FileNotFoundError:
        return {}
    if modality == "text":
        return {f"{corpus}_dev": _sample(*text_split(corpus, "dev"), limit, seed) for corpus in TEXT_SPLITS}
    if modality == "image":
        images, labels = load_fer("publictest")
        return {FER_VALIDATION: _sample(list(images), labels, limit, seed)}
    from ..core.errors import InputError
    from .data import prepare_speech
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
