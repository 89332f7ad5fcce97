"""The Image tab: a photo with a labelled box per face, and per-face probability bars."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr
import numpy as np

from ..core.paths import ROOT
from ..media.images import load_image
from ..pipelines import classify
from .access import on, run_on_click
from .annotate import send_to_annotation
from .charts import prob_bars
from .components import Photo, action_buttons
from .messages import HEAVY, for_api, notes, problem, top, top_classes

EXAMPLES = ROOT / "examples"


def draw_faces(image, faces: list[dict]) -> np.ndarray:
    """The image (a path or an RGB array) with each face's box, its number (as in the
    chart: face 1, 2, ...) and top emotion drawn on it. A label that would sit in the
    image's top strip, under the viewer's badge, goes below its box instead."""
    import cv2
    out = np.ascontiguousarray(load_image(image) if isinstance(image, (str, Path)) else image, dtype=np.uint8).copy()
    thickness = max(2, round(max(out.shape[:2]) / 400))
    scale = max(0.5, max(out.shape[:2]) / 1200)
    for number, face in enumerate(faces, 1):
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        text = f"{number} {face['label']} {face['probs'][face['label']]:.0%}"
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 200, 0), thickness)
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        label_y = y1 - h - base - 4
        if label_y < 0.08 * out.shape[0]:
            label_y = min(y2, out.shape[0] - h - base - 4)
        cv2.rectangle(out, (x1, label_y), (x1 + w + 4, label_y + h + base + 4), (255, 200, 0), -1)
        cv2.putText(out, text, (x1 + 2, label_y + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness)
    return out


def analyze_image(path: str | None):
    """Image tab: the photo with a labelled box per face, and per-face probability bars."""
    if not path:
        return None, None, "Upload a photo or take one with the webcam.", None, None
    result = classify("image", [path])[0]
    if "error" in result:
        return None, None, problem(result, path), None, for_api(result, path)
    faces = result["faces"]
    if result["face_detected"]:
        series, title = {f"face {i + 1}": f["probs"] for i, f in enumerate(faces)}, "Per-face probabilities"
        message = f"{len(faces)} face(s) found; main face: {top(result)} — model `{result['model']}`{notes(result)}"
    else:  # classified whole, as a ready-made face crop (the result's note): only meaningful for a close-up face
        series, title = {"whole image": result["probs"]}, "Whole image (no face found)"
        label = result["label"]  # not in bold: there is no face to be sure of
        message = (f"**No face found.** Read whole, as if it were a close-up face crop: {label} "
                   f"({result['probs'][label]:.0%}) — model `{result['model']}`. Trust this only for a picture "
                   "that is a face.")
    return draw_faces(path, faces), prob_bars(series, title), message, top_classes(result), for_api(result, path)


def build() -> None:
    with gr.Row():
        image_in = Photo(type="filepath", sources=["upload", "webcam"], label="Photo", elem_id="image-in")
        image_out = gr.Image(label="Faces found", interactive=False, elem_id="image-out")
    image_btn, image_send = action_buttons("image")
    image_msg = gr.Markdown(elem_id="image-msg")
    with gr.Row():
        image_plot = gr.Plot(label="Per-face probabilities", elem_id="image-plot", scale=2)
        image_label = gr.Label(num_top_classes=3, label="Main face", elem_id="image-label", scale=1)
    image_json = gr.JSON(label="Result (as the API answers)", open=False, elem_id="image-json")
    image_outputs = [image_out, image_plot, image_msg, image_label, image_json]
    examples = gr.Examples([[str(EXAMPLES / "astronaut.jpg")], [str(EXAMPLES / "two_faces.jpg")]], inputs=image_in,
                elem_id="image-examples")
    run_on_click(examples, analyze_image, image_in, image_outputs, **HEAVY)
    on(image_btn.click, analyze_image, image_in, image_outputs, limited=True, api_name="image", **HEAVY)
    on(image_send.click, partial(send_to_annotation, "image"), image_in, image_msg, signed_in=True, limited=True,
       api_name="send_image")
