"""One call shape for every modality: ``classify(modality, inputs) -> list[dict]``.

Each result is ``{"input", "label", "probs": {all seven}, "model": "id@version", ...}``
or ``{"input", "error"}`` for an input that failed; a batch always goes on with the rest.
Modality modules are imported on first use so the CLI and app start fast.
"""
from __future__ import annotations

import importlib
import os
from functools import cache

import numpy as np

from .labels import LABELS
from .registry import ModelEntry, ModelNotFound, active_model, create_model, get_entry

PIPELINES = {"text": "emotion_app.text", "image": "emotion_app.image",
             "audio": "emotion_app.audio", "video": "emotion_app.video"}


def resolve(modality: str, model: str | None = None):
    """The loaded model for a modality: the one asked for, else the active one."""
    entry: ModelEntry = get_entry(model) if model else active_model(modality)
    if entry.modality != modality:
        raise ValueError(f"{entry.ref} is a model for {entry.modality}, not {modality}")
    return create_model(entry.ref)


@cache
def limit_threads() -> None:
    """One torch thread per request (``EMOTION_APP_THREADS`` to change). With torch's
    default of a thread per core, two requests on a 2-core machine, or a request beside a
    training job, leave OpenMP threads waiting on each other: measured 407 ms instead of
    13 ms per sentence. The app's queue runs requests in parallel instead."""
    import torch
    torch.set_num_threads(int(os.environ.get("EMOTION_APP_THREADS", "1")))


def classify(modality: str, inputs: list, model: str | None = None, **options) -> list[dict]:
    limit_threads()
    if modality not in PIPELINES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(PIPELINES)}")
    inputs = list(inputs)
    try:
        return importlib.import_module(PIPELINES[modality]).predict(inputs, model=model, **options)
    except ModelNotFound as exc:  # every input fails the same way; callers still get one result each
        return [error_result(x, exc) for x in inputs]


def label_probs(probs) -> dict:
    """``{"label", "probs"}`` for seven probabilities: the one place their JSON shape is made."""
    probs = np.asarray(probs, dtype=float)
    return {"label": LABELS[int(probs.argmax())],
            "probs": {label: round(float(p), 6) for label, p in zip(LABELS, probs)}}


def make_result(input_, probs: np.ndarray, model_ref: str, **extra) -> dict:
    return {"input": input_, **label_probs(probs), "model": model_ref, **extra}


def error_result(input_, error: Exception | str) -> dict:
    return {"input": input_, "error": str(error)}
