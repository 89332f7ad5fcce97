"""The Image tab: a photo with a labelled box per face, and per-face probability bars."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr
import numpy as np

from ..core.paths import ROOT
from ..media.images import load_image
from ..pipelines import classify
from .annotate import send_to_annotation
from .charts import prob_bars
from .components import Photo
from .messages import notes, problem, top

EXAMPLES = ROOT / "examples"


def draw_faces(image, faces: list[dict]) -> np.ndarray:
    """The image (a path or an RGB array) with each face's box and top emotion drawn on it,
    for the app's Image tab; ``faces`` is a result's "faces" list."""
    import cv2
    out = np.ascontiguousarray(load_image(image) if isinstance(image, (str, Path)) else image, dtype=np.uint8).copy()
    thickness = max(2, round(max(out.shape[:2]) / 400))
    scale = max(0.5, max(out.shape[:2]) / 1200)
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        text = f"{face['label']} {face['probs'][face['label']]:.0%}"
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 200, 0), thickness)
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        label_y = max(0, y1 - h - base - 4)
        cv2.rectangle(out, (x1, label_y), (x1 + w + 4, label_y + h + base + 4), (255, 200, 0), -1)
        cv2.putText(out, text, (x1 + 2, label_y + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness)
    return out


def analyze_image(path: str | None):
    """Image tab: the photo with a labelled box per face, and per-face probability bars."""
    if not path:
        return None, None, "Upload a photo or take one with the webcam."
    result = classify("image", [path])[0]
    if "error" in result:
        return None, None, problem(result, path)
    faces = result["faces"]
    if result["face_detected"]:
        series, title = {f"face {i + 1}": f["probs"] for i, f in enumerate(faces)}, "Per-face probabilities"
        message = f"{len(faces)} face(s) found; main face: {top(result)} — model `{result['model']}`{notes(result)}"
    else:  # classified whole, as a ready-made face crop (the result's note): only meaningful for a close-up face
        series, title = {"whole image": result["probs"]}, "Whole image (no face found)"
        message = (f"**No face found.** Read whole, as if it were a close-up face crop: {top(result)} — model "
                   f"`{result['model']}`. Trust this only for a picture that is a face.")
    return draw_faces(path, faces), prob_bars(series, title), message


def build() -> None:
    with gr.Row():
        image_in = Photo(type="filepath", sources=["upload", "webcam"], label="Photo", elem_id="image-in")
        image_out = gr.Image(label="Faces found", interactive=False, elem_id="image-out")
    with gr.Row():
        image_btn = gr.Button("Analyse", variant="primary", elem_id="image-btn")
        image_send = gr.Button("Send to annotation", elem_id="image-send")
    image_msg = gr.Markdown(elem_id="image-msg")
    image_plot = gr.Plot(label="Per-face probabilities", elem_id="image-plot")
    gr.Examples([[str(EXAMPLES / "astronaut.jpg")], [str(EXAMPLES / "two_faces.jpg")]], inputs=image_in,
                elem_id="image-examples")
    image_btn.click(analyze_image, image_in, [image_out, image_plot, image_msg], api_name="image")
    image_send.click(partial(send_to_annotation, "image"), image_in, image_msg, api_name="send_image")
