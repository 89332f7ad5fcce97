"""Fusing one example's modalities, whichever method: ``fuse(method, ...)``, and the
features learned methods read from raw inputs (face crops, speech waves, texts)."""
from __future__ import annotations

import numpy as np

from ..core.results import label_probs
from ..media.audio import load_audio
from ..media.faces import main_face_crop
from ..media.images import load_image
from ..media.speech import speech_pieces
from ..models.fusion import AUDIO, IMAGE, TEXT, fusion_model, late_fusion
from ..models.registry import active_model, create_model
from .audio import analyse_wave
from .text import prepare_text


def needs_features(method: str) -> bool:
    """Whether the method reads modality features (all but late fusion)."""
    return bool(fusion_model(method).inputs)


def modality_features(method: str, modality: str, batch) -> np.ndarray:
    """(N, dim) features of raw inputs (face crops, speech waves or texts) for ``method``."""
    spec = fusion_model(method).inputs[modality]
    model = create_model(spec["source"])
    return model.embed(list(batch)) if spec["kind"] == "embedding" else model.predict_proba(list(batch))


def input_features(method: str, image=None, text=None, audio=None) -> dict[str, np.ndarray]:
    """Fusion features of one photo, text and voice clip (the Tri-modal tab's inputs):
    the photo's main face crop (``media.faces.main_face_crop``, as the image pipeline
    reads it), the text, the clip's speech. Empty inputs are left out; a bad one raises
    InputError."""
    out = {}
    if image:
        crop, _ = main_face_crop(load_image(image))
        out[IMAGE] = modality_features(method, IMAGE, [crop])[0]
    if text is not None and str(text).strip():
        out[TEXT] = modality_features(method, TEXT, [prepare_text(text)[0]])[0]
    if audio:  # the speech segments the voice pipeline classifies, weighted by length
        wave = load_audio(audio)
        pieces = speech_pieces(wave, analyse_wave(str(audio), wave, create_model(active_model(AUDIO).ref),
                                                  transcribe=False)["segments"])
        out[AUDIO] = np.average(modality_features(method, AUDIO, pieces), axis=0, weights=[len(p) for p in pieces])
    return out


def fuse(method: str, probs_by_modality: dict, features_by_modality: dict | None = None,
         weights: dict | None = None) -> dict:
    """Fuse one example's modalities: ``{"label", "probs", "model"}`` (+ ``"weights"`` for
    late fusion). ``probs_by_modality`` maps image/audio/text to 7 probabilities; learned
    methods read ``features_by_modality`` (see ``modality_features``) instead; ``weights``
    override late fusion's own (fitted, or its models' validation F1). A modality that is absent is left out."""
    model = fusion_model(method)
    if not model.inputs:
        return {**late_fusion(probs_by_modality, weights or model.weights), "model": model.entry.ref}
    probs = model.predict_proba([features_by_modality or {}])[0]
    return {**label_probs(probs), "model": model.entry.ref}
