"""Multimodal emotion recognition: face, text, voice and video, per modality and fused.

The package is layered; each layer imports only from the ones above it in this list:
``core`` (labels, results, errors, metrics, paths) <- ``media`` (decoding, faces,
speech, transcripts) <- ``models`` (registry, architectures) <- ``pipelines`` (one per
modality, and fusion) <- ``train`` (the shared training loop) <- ``annotation``,
``finetune`` <- ``app`` (one module per tab) and the command lines.
"""
from .core.labels import LABELS
from .models.registry import active_model, create_model, list_models, register_architecture, set_active
from .pipelines import classify

__all__ = ["LABELS", "classify", "active_model", "create_model", "list_models", "register_architecture", "set_active"]
