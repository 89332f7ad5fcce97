"""One pipeline per modality, one shape for all: preprocess, forward, postprocess.

``classify(modality, inputs, model=None, **options)`` returns one result per input:
``{"input", "label", "probs", "model", ...}``, or ``{"input", "error"}`` for an input
that failed, whatever it raised; the batch goes on with the rest.
"""
from .base import PIPELINES, Pipeline, classify, pipeline_for, resolve

__all__ = ["PIPELINES", "Pipeline", "classify", "pipeline_for", "resolve"]
