"""The pipeline shape every modality shares, and ``classify``.

A pipeline turns a batch of inputs into one result each, in three steps (the shape of
transformers' pipelines): ``preprocess`` one input (decode, find faces or speech, clean
text), ``forward`` the prepared inputs through the model (as one batch where the model
batches), ``postprocess`` one input's output into its result. ``__call__`` runs them
with one error loop: an input whose step raises, whatever it raises, becomes an error
result and the others go on; an unexpected exception is logged with its traceback.
"""
from __future__ import annotations

import importlib
import logging
import os
from functools import cache

from ..core.errors import InputError, ModelNotFound
from ..core.results import error_result
from ..models.base import Model
from ..models.registry import active_model, create_model, get_entry

log = logging.getLogger(__name__)

# modality -> module defining its Pipeline subclass as ``PIPELINE``; imported on first use
# so the CLI and app start fast.
PIPELINES = {"text": "emotion_app.pipelines.text", "image": "emotion_app.pipelines.image",
             "audio": "emotion_app.pipelines.audio", "video": "emotion_app.pipelines.video"}


def resolve(modality: str, model: str | None = None) -> Model:
    """The loaded model for a modality: the one asked for, else the active one."""
    entry = get_entry(model) if model else active_model(modality)
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


def ignore_progress(stage: str, fraction: float) -> None:
    """The ``progress(stage, fraction)`` callback of a pipeline nobody watches."""


class Pipeline:
    """Subclasses set ``modality`` and ``defaults`` (every option they take, with its
    default) and implement the three steps. ``batched``: whether ``forward`` takes the
    whole batch at once (else it is called with one prepared input at a time)."""

    modality: str
    defaults: dict = {}
    batched = True

    def __init__(self, model: str | None = None, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown option(s) for {self.modality}: {', '.join(unknown)}; "
                             f"expected {', '.join(self.defaults) or 'none'}")
        self.options = {**self.defaults, **options}
        self.model_name = model
        self.model = self.load_model(model)

    def load_model(self, model: str | None) -> Model:
        return resolve(self.modality, model)

    def preprocess(self, item):
        return item

    def forward(self, prepared: list) -> list:
        raise NotImplementedError

    def postprocess(self, item, prepared, output) -> dict:
        raise NotImplementedError

    def __call__(self, inputs) -> list[dict]:
        inputs = list(inputs)
        results: list[dict | None] = [None] * len(inputs)
        prepared = []  # (index, prepared input)
        for i, item in enumerate(inputs):
            try:
                prepared.append((i, self.preprocess(item)))
            except Exception as exc:  # noqa: BLE001 - one bad input never ends the batch
                results[i] = self.failure(item, exc)
        for (i, ready), output in zip(prepared, self._forward_each(inputs, prepared, results)):
            if results[i] is not None:
                continue  # its forward failed
            try:
                results[i] = self.postprocess(inputs[i], ready, output)
            except Exception as exc:  # noqa: BLE001
                results[i] = self.failure(inputs[i], exc)
        return results

    def _forward_each(self, inputs, prepared, results) -> list:
        """Outputs in ``prepared``'s order; an input whose forward fails gets its error
        result and a None output. A batch that fails is retried one input at a time, so
        only the input at fault fails."""
        if self.batched and prepared:
            try:
                return list(self.forward([ready for _, ready in prepared]))
            except Exception:  # noqa: BLE001
                log.debug("batch forward failed; retrying one input at a time", exc_info=True)
        outputs = []
        for i, ready in prepared:
            try:
                outputs.append(self.forward([ready])[0])
            except Exception as exc:  # noqa: BLE001
                results[i] = self.failure(inputs[i], exc)
                outputs.append(None)
        return outputs

    def failure(self, item, exc: Exception) -> dict:
        """The error result for an input. InputError and ModelNotFound messages are for
        the user as they are; anything else is a bug or a fault, logged in full."""
        if not isinstance(exc, (InputError, ModelNotFound)):
            log.error("%s: unexpected error on %r", self.modality, item, exc_info=exc)
            exc = f"unexpected error ({exc.__class__.__name__}: {exc})"
        return error_result(item if isinstance(item, str) else str(item), exc)


def pipeline_for(modality: str, model: str | None = None, **options) -> Pipeline:
    """The modality's pipeline with the model asked for (else the active one)."""
    if modality not in PIPELINES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(PIPELINES)}")
    return importlib.import_module(PIPELINES[modality]).PIPELINE(model, **options)


def classify(modality: str, inputs, model: str | None = None, **options) -> list[dict]:
    """One result per input (see the package docstring). An unknown modality or option
    raises ValueError; a missing model fails every input the same way."""
    limit_threads()
    inputs = list(inputs)
    try:
        pipe = pipeline_for(modality, model, **options)
    except ModelNotFound as exc:  # callers still get one result per input
        return [error_result(x, exc) for x in inputs]
    return pipe(inputs)
