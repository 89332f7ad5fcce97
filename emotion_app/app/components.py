"""Components the tabs share."""
from __future__ import annotations

import base64
import binascii

import gradio as gr
from gradio.image_utils import preprocess_image
from gradio.processing_utils import save_bytes_to_cache
from PIL import Image

from .messages import SEGMENT_HEADERS


class Photo(gr.Image):
    """gr.Image that hands the handler the upload's path with its pixels unread, so the
    app's loader checks the declared size before anything is decoded (Gradio's own
    conversion decodes the whole image as the request joins the queue, before any check).
    An unreadable upload (corrupt, not an image, a decompression bomb) is handed over as
    its path too, so the tab says what is wrong with it instead of a bare "Error". A
    subclass, not a patched instance: Gradio rebuilds updated components from their class."""
    is_template = True  # drawn by gr.Image's frontend

    def preprocess(self, payload):
        if self.type == "filepath" and payload is not None and (payload.url or "").startswith("data:"):
            return self._save_data_url(payload.url)
        try:
            return preprocess_image(payload, cache_dir=self.GRADIO_CACHE, format=self.format, image_mode=None,
                                    type=self.type)  # image_mode None: the path as it came, no conversion
        except (OSError, ValueError, Image.DecompressionBombError):  # UnidentifiedImageError is an OSError
            if self.type != "filepath" or payload is None or payload.path is None:
                raise
            return str(payload.path)

    def _save_data_url(self, url: str) -> str:
        """A ``data:image/jpeg;base64,...`` value (a streamed webcam frame, or an API
        client's) saved undecoded as a file; Gradio would decode and re-encode it."""
        header, _, data = url.partition(",")
        kind = header.removeprefix("data:").split(";")[0].partition("/")[2] or "png"
        try:
            content = base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise gr.Error(f"⚠️ {self.label or 'image'}: not a base64 data URL ({exc})") from None
        return save_bytes_to_cache(content, f"frame.{'jpg' if kind == 'jpeg' else kind}", self.GRADIO_CACHE)


def action_buttons(tab: str) -> tuple[gr.Button, gr.Button]:
    """A tab's "Analyse" and "Send to annotation" buttons, side by side (``{tab}-btn``, ``{tab}-send``)."""
    with gr.Row():
        return (gr.Button("Analyse", variant="primary", elem_id=f"{tab}-btn"),
                gr.Button("Send to annotation", elem_id=f"{tab}-send"))


def segments_table(tab: str) -> gr.Dataframe:
    """The per-speech-segment table of a tab that transcribes (``messages.segment_rows``)."""
    return gr.Dataframe(headers=SEGMENT_HEADERS, label="Speech segments", wrap=True, max_chars=400,
                        column_widths=["12%", "46%", "14%", "14%", "14%"], elem_id=f"{tab}-segments")
