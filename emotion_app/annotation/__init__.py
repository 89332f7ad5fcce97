"""Annotation queues: durable storage of items, model predictions and human labels
(``store``), imports that decode every file first (``importer``), exports as datasets
(``export``), inter-annotator agreement, the order items are served in (``priority``,
``rescoring``, ``rounds``, ``simulate``), and the command line (``cli``)."""
from .store import SENT_QUEUE, AnnotationStore, add_item_from_prediction, agreed_labels, default_store

__all__ = ["SENT_QUEUE", "AnnotationStore", "add_item_from_prediction", "agreed_labels", "default_store"]
