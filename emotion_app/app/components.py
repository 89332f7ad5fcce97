"""Components the tabs share."""
from __future__ import annotations

import gradio as gr


class Photo(gr.Image):
    """gr.Image that hands an unreadable upload (corrupt, or not an image) to the handler
    as its path, so the tab says what is wrong with it instead of a bare "Error". A
    subclass, not a patched instance: Gradio rebuilds updated components from their class."""
    is_template = True  # drawn by gr.Image's frontend

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
            if self.type != "filepath" or payload is None or payload.path is None:
                raise
            return str(payload.path)
