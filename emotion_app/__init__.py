"""Multimodal emotion recognition: face, text, voice and video, per modality and fused."""
from .labels import LABELS
from .pipeline import classify
from .registry import active_model, create_model, list_models, register_architecture, set_active

__all__ = ["LABELS", "classify", "active_model", "create_model", "list_models", "register_architecture", "set_active"]
