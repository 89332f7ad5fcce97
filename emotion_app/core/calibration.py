"""Calibrated probabilities and the "uncertain" flag.

A model's raw probabilities are often over- or under-confident. Temperature scaling
(Guo et al., 2017) divides the logits by one number fitted on held-out data, which
leaves every argmax as it is and makes "80%" mean right about 80% of the time. Since
``log p`` equals the logits up to a constant per example, it applies to probabilities
as well, so ensembles and any model that only gives probabilities are calibrated the
same way. A result whose top calibrated probability is below the model's
``uncertain_below`` threshold (chosen on the same held-out data: below it, predictions
are more often wrong than right) is flagged ``"uncertain": true``.
"""
from __future__ import annotations

import numpy as np

ECE_BINS = 15


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)``, row by row."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probs, labels) -> float:
    probs = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """The gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by how many predictions fall in each."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def fit_temperature(probs, labels) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels``."""
    from scipy.optimize import minimize_scalar
    found = minimize_scalar(lambda log_t: negative_log_likelihood(apply_temperature(probs, np.exp(log_t)), labels),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def uncertainty_threshold(probs, labels, accuracy: float = 0.5) -> float:
    """The top probability below which predictions are right at most ``accuracy`` of the
    time: scanning up from the least confident, the first point where the accuracy of its
    neighbours (a window of a twentieth of the set, at least 25) rises above ``accuracy``."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    order = np.argsort(probs.max(axis=1))
    confidence, correct = probs.max(axis=1)[order], (probs.argmax(axis=1) == labels)[order].astype(float)
    window = min(len(correct), max(25, len(correct) // 20))
    local = np.convolve(correct, np.ones(window) / window, mode="same")
    above = np.flatnonzero(local > accuracy)
    return float(confidence[above[0]]) if len(above) else float(confidence[-1]) + 1e-6


def calibrate(probs, labels, fitted_on: str) -> dict:
    """A model config's ``calibration`` entry, with the figures its card shows."""
    temperature = fit_temperature(probs, labels)
    calibrated = apply_temperature(probs, temperature)
    threshold = uncertainty_threshold(calibrated, labels)
    flagged = calibrated.max(axis=1) < threshold
    correct = calibrated.argmax(axis=1) == np.asarray(labels)
    return {"temperature": round(temperature, 4), "uncertain_below": round(threshold, 4), "fitted_on": fitted_on,
            "n": int(len(labels)), "ece_before": round(expected_calibration_error(probs, labels), 4),
            "ece_after": round(expected_calibration_error(calibrated, labels), 4),
            "nll_before": round(negative_log_likelihood(probs, labels), 4),
            "nll_after": round(negative_log_likelihood(calibrated, labels), 4),
            "uncertain_share": round(float(flagged.mean()), 4),
            "uncertain_accuracy": round(float(correct[flagged].mean()), 4) if flagged.any() else None,
            "certain_accuracy": round(float(correct[~flagged].mean()), 4) if (~flagged).any() else None}
