"""The bundled models predict exactly what they predicted when they were trained: a
refactor of the loading code (timm backbones, the model index, pipelines) must not move
a probability. ``data/bundled_predictions.json`` holds each bundled image, text and
audio model's probabilities on fixed inputs made from ``examples/``, recorded with the
code that trained them.

Two inputs differ from one CPU to another, so the test fixes them: the face crops are cut
at recorded landmarks, and the models over Whisper's last layer read it from the float
encoder (``whisper_layers``) instead of CTranslate2's int8 one, whose arithmetic depends on
the CPU's instruction set (on another CI machine it moved these models' probabilities by up
to 0.045). Those rows were re-recorded when the test changed, with code that still
reproduced the original recording on this CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from emotion_app.media import transcribe
from emotion_app.media.audio import load_audio
from emotion_app.media.faces import detect_faces, fer_crop
from emotion_app.media.whisper_layers import layer_states
from emotion_app.models.registry import create_model, list_models

from .conftest import ROOT

EXAMPLES = ROOT / "examples"
REFERENCE = json.loads((ROOT / "tests" / "data" / "bundled_predictions.json").read_text())
# The faces' five landmarks as detect_faces found them, to a tenth of a pixel. The crops
# are cut at these, not at a fresh detection: MTCNN's landmarks differ in the fourth
# decimal from one CPU to another, which moved a crop's probabilities by up to 7e-5.
LANDMARKS = {
    "astronaut.jpg": [[[204.7, 101.0], [247.2, 103.1], [224.7, 129.1], [202.1, 139.3], [245.1, 142.0]]],
    "two_faces.jpg": [[[153.1, 76.6], [185.5, 78.3], [169.1, 97.1], [152.1, 105.6], [184.3, 106.7]],
                      [[583.8, 78.2], [615.8, 76.1], [600.8, 97.1], [584.7, 106.8], [617.8, 105.1]]],
}


def example_rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / name).convert("RGB"))


def fixed_inputs() -> dict:
    crops = []
    for name, faces in LANDMARKS.items():
        rgb = example_rgb(name)
        crops += [fer_crop(rgb, np.array(points)) for points in faces] + [rgb]
    texts = (EXAMPLES / "texts.txt").read_text().splitlines() + ["I can't believe we won!", "This is disgusting."]
    waves = [load_audio(EXAMPLES / f"speech_{emotion}.wav") for emotion in ("happy", "angry", "sad")]
    return {"image": crops, "text": texts, "audio": waves}


@pytest.fixture(scope="module")
def inputs():
    return fixed_inputs()


def float_whisper_states(wave: np.ndarray) -> np.ndarray:
    return layer_states(wave)[-1].numpy()


@pytest.mark.parametrize("ref", sorted(REFERENCE))
def test_bundled_model_predicts_as_recorded(ref, inputs, monkeypatch):
    monkeypatch.setattr(transcribe, "whisper_encode", float_whisper_states)
    model = create_model(ref)
    probs = model.predict_proba(inputs[model.entry.modality])
    np.testing.assert_allclose(probs, np.array(REFERENCE[ref]), atol=2e-5)


@pytest.mark.parametrize("name", sorted(LANDMARKS))
def test_the_detector_finds_the_recorded_landmarks(name):
    found = [face.landmarks for face in detect_faces(example_rgb(name))]
    np.testing.assert_allclose(np.array(found), np.array(LANDMARKS[name]), atol=0.25)


def test_the_served_int8_whisper_states_match_the_float_encoder(inputs):
    for wave in inputs["audio"]:
        served, exact = transcribe.whisper_encode(wave), float_whisper_states(wave)
        assert served.shape == exact.shape
        cosine = np.sum(served * exact, 1) / (np.linalg.norm(served, axis=1) * np.linalg.norm(exact, axis=1))
        assert cosine.mean() > 0.99


def test_every_bundled_image_text_and_audio_model_is_recorded():
    bundled = {e.ref for e in list_models() if e.source == "bundled" and e.modality in ("image", "text", "audio")}
    assert bundled == set(REFERENCE)
