"""The bundled models predict exactly what they predicted when they were trained: a
refactor of the loading code (timm backbones, the model index, pipelines) must not move
a probability. ``data/bundled_predictions.json`` holds each bundled image, text and
audio model's probabilities on fixed inputs made from ``examples/``, recorded with the
code that trained them."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from emotion_app.media.audio import load_audio
from emotion_app.media.faces import detect_faces
from emotion_app.models.registry import create_model, list_models

from .conftest import ROOT

EXAMPLES = ROOT / "examples"
REFERENCE = json.loads((ROOT / "tests" / "data" / "bundled_predictions.json").read_text())


def fixed_inputs() -> dict:
    crops = []
    for name in ("astronaut.jpg", "two_faces.jpg"):
        rgb = np.asarray(Image.open(EXAMPLES / name).convert("RGB"))
        crops += [face.crop for face in detect_faces(rgb)] + [rgb]
    texts = (EXAMPLES / "texts.txt").read_text().splitlines() + ["I can't believe we won!", "This is disgusting."]
    waves = [load_audio(EXAMPLES / f"speech_{emotion}.wav") for emotion in ("happy", "angry", "sad")]
    return {"image": crops, "text": texts, "audio": waves}


@pytest.fixture(scope="module")
def inputs():
    return fixed_inputs()


@pytest.mark.parametrize("ref", sorted(REFERENCE))
def test_bundled_model_predicts_as_recorded(ref, inputs):
    model = create_model(ref)
    probs = model.predict_proba(inputs[model.entry.modality])
    np.testing.assert_allclose(probs, np.array(REFERENCE[ref]), atol=2e-5)


def test_every_bundled_image_text_and_audio_model_is_recorded():
    bundled = {e.ref for e in list_models() if e.source == "bundled" and e.modality in ("image", "text", "audio")}
    assert bundled == set(REFERENCE)
