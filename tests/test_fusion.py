import itertools

import numpy as np
import pytest

from emotion_app.core.errors import InputError, ModelNotFound
from emotion_app.core.labels import LABELS
from emotion_app.models.fusion import (
    FUSED_MODALITIES,
    METHODS,
    LateFusion,
    default_weights,
    fit_late_weights,
    fusion_model,
    late_fusion,
)
from emotion_app.pipelines.fusion import fuse, input_features, needs_features

from .conftest import ROOT

EXAMPLES = ROOT / "examples"
LEARNED = [m for m in METHODS if m != "late"]
SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(FUSED_MODALITIES, r)]
HAPPY = dict(zip(LABELS, [0.05, 0.0, 0.05, 0.7, 0.1, 0.05, 0.05]))
SAD = dict(zip(LABELS, [0.05, 0.05, 0.05, 0.05, 0.1, 0.65, 0.05]))


def valid_probs(probs: dict):
    assert list(probs) == list(LABELS)
    assert all(0 <= p <= 1 for p in probs.values()) and abs(sum(probs.values()) - 1) < 1e-3


def test_late_fusion_user_weights_override_the_defaults():
    by_user = late_fusion({"image": HAPPY, "audio": SAD}, {"image": 0.2, "audio": 0.8})
    assert by_user["label"] == "sad" and by_user["weights"] == {"image": 0.2, "audio": 0.8}
    assert fuse("late", {"image": HAPPY, "audio": SAD}, weights={"image": 1.0, "audio": 0.0})["probs"] == HAPPY


def test_late_fusion_defaults_are_normalised_validation_f1():
    result = fuse("late", {"image": HAPPY, "audio": SAD, "text": SAD})
    f1 = default_weights(FUSED_MODALITIES)
    expected = {m: round(f1[m] / sum(f1.values()), 4) for m in FUSED_MODALITIES}
    assert result["weights"] == expected and result["model"].startswith("fusion-late@")
    valid_probs(result["probs"])


def test_late_fusion_drops_a_missing_modality_and_refuses_nothing():
    result = fuse("late", {"image": None, "audio": SAD, "text": None})
    assert result["probs"] == SAD and set(result["weights"]) == {"audio"}
    with pytest.raises(ValueError, match="no modality"):
        fuse("late", {"image": None})
    with pytest.raises(ValueError, match="weight 0"):
        late_fusion({"image": HAPPY}, {"image": 0.0})


def test_unknown_method_is_reported_with_the_available_models():
    with pytest.raises(ModelNotFound, match="expected one of late, concat"):
        fuse("telepathy", {"image": HAPPY})
    with pytest.raises(ValueError, match="is a model for text, not fusion"):
        fuse("text-tfidf-lr", {"image": HAPPY})


@pytest.mark.parametrize("method", LEARNED)
def test_learned_fusion_gives_probabilities_for_every_subset_of_modalities(method):
    model = fusion_model(method)
    assert needs_features(method) and set(model.inputs) == set(FUSED_MODALITIES)
    rng = np.random.default_rng(0)
    for subset in SUBSETS:
        features = {m: model.mean[m] + model.std[m] * rng.standard_normal(model.inputs[m]["dim"]) for m in subset}
        first = fuse(method, {}, features)
        valid_probs(first["probs"])
        assert first == fuse(method, {}, features)  # deterministic (EmbraceNet uses the expectation)
        assert first["model"] == model.entry.ref
    with pytest.raises(ValueError, match="no modality"):
        fuse(method, {}, {})


@pytest.mark.parametrize("method", LEARNED)
def test_learned_fusion_reads_features_of_real_inputs(method):
    model = fusion_model(method)
    features = input_features(method, image=EXAMPLES / "astronaut.jpg", audio=EXAMPLES / "speech_happy.wav",
                              text="I just got the job! This is the best day of my life!")
    for m, f in features.items():
        assert f.shape == (model.inputs[m]["dim"],) and np.isfinite(f).all()
    fused = fuse(method, {}, features)
    valid_probs(fused["probs"])
    assert fused["label"] == "happy"
    assert fuse(method, {}, {"text": features["text"]})["label"] == "happy"
    assert set(input_features(method, text="  ")) == set()


def test_bad_input_features_are_input_errors(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="broken.jpg"):
        input_features(LEARNED[0], image=broken)


def test_fitted_late_weights_favour_the_modality_that_is_right():
    """The face is right on every item, the voice at random; text is never present, so it
    keeps its default share."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(LABELS), 40)
    items = [{"image": np.eye(len(LABELS))[y] * 0.6 + 0.4 / len(LABELS),
              "audio": rng.dirichlet(np.ones(len(LABELS)))} for y in labels]
    weights = fit_late_weights(items, labels)
    defaults = default_weights(FUSED_MODALITIES)
    assert weights["image"] > weights["audio"] and abs(sum(weights.values()) - 1) < 1e-3
    assert weights["text"] == pytest.approx(defaults["text"] / sum(defaults.values()), abs=1e-4)
    model = LateFusion(weights)
    assert model.predict_proba(items).argmax(1).tolist() == labels.tolist()
