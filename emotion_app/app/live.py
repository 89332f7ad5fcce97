"""The Live tab: the webcam streamed frame by frame, faces boxed and labelled, and a
rolling emotion trace per face.

Frames arrive every STREAM_EVERY seconds; each is shrunk to DETECT_SIDE pixels for
MTCNN (a webcam face is large: 320 px is plenty, and detection is most of the cost),
its faces classified in one batch by one network (``live_model``), and the boxes drawn
on the shrunk frame. A frame that
arrives while the previous one is still being read waits for at most the one slot the
queue gives it (concurrency 1 per session, the newest frame wins), so the view never
lags behind. Face numbers follow size (face 1 is the largest), as in the Image tab.

The stream is wired like every analysis (``access.on``): visitors may use it, each caller
may have one stream open, it shares the model work's two slots, and it stops after
``access.STREAM_TIME_LIMIT`` seconds (pressing record again starts a new one), so a
stalled stream cannot hold a slot for long. A frame declaring more than
MAX_FRAME_PIXELS is refused before it is decoded.
"""
from __future__ import annotations

import time
from collections import deque

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from ..core.errors import InputError
from ..core.inputs import markdown_escape, with_file_names
from ..core.labels import LABELS
from ..core.results import label_probs
from ..media.faces import detect_faces
from ..media.images import readable_image, shrink
from ..models.base import Model
from ..pipelines.base import limit_threads, resolve
from .access import on
from .components import Photo
from .image import draw_faces
from .messages import HEAVY

STREAM_EVERY = 0.1  # seconds between frames sent: up to 10 per second
DETECT_SIDE = 320
MIN_FACE_SIZE = 48  # at 320 px: a face a sixth of the frame's height or more (a webcam face is larger)
TRACE_SECONDS = 30.0
MAX_TRACKED_FACES = 3
CHART_EVERY = 0.5  # the trace chart is redrawn at most this often (drawing it costs the browser)
MAX_FRAME_PIXELS = 3840 * 2160  # a 4K webcam's frame; decoding a larger one is what an attacker would want


def new_trace() -> dict:
    return {"frames": deque(), "started": None, "times": deque(maxlen=20), "charted": 0.0}


def read_frame(path: str) -> np.ndarray:
    """A frame file as RGB, DETECT_SIDE pixels on its longer side at most. Its declared
    size is checked before it is decoded: a 13000x13000 PNG of a few KB would cost GBs."""
    from PIL import Image
    with readable_image(path), Image.open(path) as im:
        if im.width * im.height > MAX_FRAME_PIXELS:
            raise InputError(f"{path}: frame is {im.width}x{im.height}, over the {MAX_FRAME_PIXELS:,} pixels "
                             "of a 4K webcam")
        im.draft("RGB", (DETECT_SIDE, DETECT_SIDE))  # a JPEG (as browsers stream) decoded at reduced scale
        return shrink(np.asarray(im.convert("RGB")), DETECT_SIDE)


def analyse_frame(frame: str | None, trace: dict | None):
    """One webcam frame (its file) -> (the frame with boxes, the updated trace, the trace
    chart or gr.skip(), a status line). ``trace`` keeps the last TRACE_SECONDS of per-face
    probabilities and the recent frame times (for the frame rate shown)."""
    trace = trace or new_trace()
    if frame is None:
        return None, trace, gr.skip(), "Press the camera's record button to start."
    limit_threads()
    start = time.perf_counter()
    try:
        rgb = read_frame(frame)
    except InputError as exc:
        return None, trace, gr.skip(), f"⚠️ {markdown_escape(with_file_names(str(exc), [frame]))}"
    faces = detect_faces(rgb, min_face_size=MIN_FACE_SIZE)[:MAX_TRACKED_FACES]
    model = live_model()
    probs = model.calibrated_proba([f.crop for f in faces]) if faces else np.zeros((0, len(LABELS)))
    results = [{"box": list(f.box), **label_probs(p)} for f, p in zip(faces, probs)]
    now = time.time()
    trace["started"] = trace["started"] or now
    trace["frames"].append((now - trace["started"], [r["probs"] for r in results]))
    while trace["frames"] and trace["frames"][0][0] < now - trace["started"] - TRACE_SECONDS:
        trace["frames"].popleft()
    trace["times"].append(now)
    chart = gr.skip()
    if now - trace["charted"] >= CHART_EVERY:
        chart, trace["charted"] = trace_chart(trace), now
    ms = (time.perf_counter() - start) * 1000
    rate = (len(trace["times"]) - 1) / (trace["times"][-1] - trace["times"][0]) if len(trace["times"]) > 1 else 0
    status = (f"{len(faces)} face(s) · {ms:.0f} ms per frame · {rate:.1f} frames per second analysed"
              + ("" if faces else " · no face in view"))
    return draw_faces(rgb, results), trace, chart, status


def live_model() -> Model:
    """The active face model, or, when it is an ensemble, its strongest member (by its
    validation weighted F1): one network per face instead of several keeps a frame
    within the frame interval on two CPU cores."""
    model = resolve("image")
    members = getattr(model, "members", None)
    return max((m for m, _ in members), key=lambda m: m.entry.validation_f1) if members else model


def trace_chart(trace: dict) -> go.Figure:
    """Face 1's probability of each emotion over the last TRACE_SECONDS (the largest face;
    other faces are drawn in the frame)."""
    times = [t for t, faces in trace["frames"] if faces]
    figure = go.Figure()
    for label in LABELS:
        figure.add_trace(go.Scatter(x=times, y=[faces[0][label] for _, faces in trace["frames"] if faces],
                                    mode="lines", name=label))
    figure.update_layout(title="Face 1, last 30 s", xaxis_title="seconds", yaxis=dict(range=[0, 1]),
                         height=300, margin=dict(l=40, r=10, t=40, b=40), legend=dict(orientation="h", y=-0.3))
    return figure


def build() -> None:
    with gr.Row():
        camera = Photo(type="filepath", sources=["webcam"], streaming=True, label="Webcam", elem_id="live-in")
        shown = gr.Image(label="Faces", interactive=False, elem_id="live-out")
    status = gr.Markdown(elem_id="live-status")
    chart = gr.Plot(label="Rolling emotion trace", elem_id="live-trace")
    trace = gr.State(None)
    on(camera.stream, analyse_frame, [camera, trace], [shown, trace, chart, status], limited=True, stream=True,
       stream_every=STREAM_EVERY, api_name="live", **HEAVY)
