"""The shape every pipeline shares: one result per input whatever one input raises, and
options each modality does not take refused."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emotion_app import classify
from emotion_app.models.registry import create_model
from emotion_app.pipelines import image as image_pipeline

from .conftest import ROOT

PHOTO = ROOT / "examples" / "astronaut.jpg"


def test_an_unexpected_error_in_one_photo_leaves_the_others_answered(tmp_path, monkeypatch, caplog):
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(bad)
    detect = image_pipeline.detect_faces

    def detector_crashes_on_bad(rgb, **options):
        if rgb.shape[:2] == (64, 64):
            raise RuntimeError("detector crashed")
        return detect(rgb, **options)

    monkeypatch.setattr(image_pipeline, "detect_faces", detector_crashes_on_bad)
    results = classify("image", [str(PHOTO), str(bad), str(PHOTO)])
    assert [r.get("label") for r in results] == ["happy", None, "happy"]
    assert results[1] == {"input": str(bad), "error": "unexpected error (RuntimeError: detector crashed)"}
    assert "detector crashed" in caplog.text  # logged with its traceback for whoever runs the server


def test_a_batch_forward_that_fails_is_retried_item_by_item(monkeypatch):
    model = create_model("text-ensemble")
    predict = model.predict_proba

    def fails_on_boom(texts):
        if any("boom" in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        return predict(texts)

    monkeypatch.setattr(model, "predict_proba", fails_on_boom)
    results = classify("text", ["I am so happy today!", "boom", "I am furious with you"])
    assert [r.get("label") for r in results] == ["happy", None, "angry"]
    assert results[1]["error"] == "unexpected error (RuntimeError: tokenizer exploded)"


def test_options_a_modality_does_not_take_are_refused():
    with pytest.raises(ValueError, match="unknown option.*for image: transcribe; expected min_confidence"):
        classify("image", [str(PHOTO)], transcribe=False)
    with pytest.raises(ValueError, match="unknown option.*for text: fusion"):
        classify("text", ["hello"], fusion="late")


def test_a_missing_model_fails_every_input_the_same_way():
    results = classify("text", ["one", "two"], model="no-such-model")
    assert [r["input"] for r in results] == ["one", "two"]
    assert all("unknown model 'no-such-model'" in r["error"] for r in results)
