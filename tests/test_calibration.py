"""Temperature scaling and the uncertain flag: the maths on data with a known answer,
and the served results of calibrated models."""
from __future__ import annotations

import numpy as np

from emotion_app import classify
from emotion_app.core.calibration import (
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    uncertainty_threshold,
)
from emotion_app.models.registry import active_model, create_model


def overconfident(n=4000, true_temperature=2.5, seed=0):
    """Labels drawn from softmax(z); a model that reports softmax(z * 2.5)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3.0, (n, 7))  # separable enough that most predictions are right
    true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(7, p=p) for p in true])
    reported = np.exp(z * true_temperature)
    return reported / reported.sum(1, keepdims=True), labels


def test_temperature_keeps_the_argmax_and_one_is_the_identity():
    probs, _ = overconfident(200)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-9)
    assert (apply_temperature(probs, 3.0).argmax(1) == probs.argmax(1)).all()


def test_fitting_recovers_a_known_overconfidence_and_lowers_the_calibration_error():
    probs, labels = overconfident()
    temperature = fit_temperature(probs, labels)
    assert 2.2 < temperature < 2.8
    assert expected_calibration_error(apply_temperature(probs, temperature), labels) < 0.5 * \
        expected_calibration_error(probs, labels)


def test_results_below_the_threshold_are_right_at_most_half_the_time():
    probs, labels = overconfident()
    calibrated = apply_temperature(probs, fit_temperature(probs, labels))
    threshold = uncertainty_threshold(calibrated, labels)
    below = calibrated.max(1) < threshold
    assert 0 < below.mean() < 1
    assert (calibrated.argmax(1) == labels)[below].mean() <= 0.5
    assert (calibrated.argmax(1) == labels)[~below].mean() > 0.6
    report = calibrate(probs, labels, "synthetic")
    assert report["ece_after"] < report["ece_before"] and report["uncertain_accuracy"] <= 0.5


def test_served_text_probabilities_are_calibrated_and_flag_uncertainty():
    entry = active_model("text")
    calibration = entry.config["calibration"]
    texts = ["I am so happy today!", "ok", "whatever you say"]
    raw = create_model(entry.ref).predict_proba(texts)
    results = classify("text", texts)
    served = np.array([[r["probs"][label] for label in r["probs"]] for r in results])
    np.testing.assert_allclose(served, apply_temperature(raw, calibration["temperature"]), atol=1e-5)
    for r, p in zip(results, served):
        assert r["uncertain"] == (p.max() < calibration["uncertain_below"])
    assert results[0]["uncertain"] is False
