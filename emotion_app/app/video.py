"""The Video tab: face, voice, text and fused emotion, a per-second timeline, and the
main speaker's face in sampled frames."""
from __future__ import annotations

from functools import partial

import gradio as gr
import numpy as np

from ..core.inputs import markdown_escape
from ..core.paths import ROOT
from ..media.video import probe, sample_frames
from ..models.fusion import METHODS
from ..pipelines import classify
from .access import on, run_on_click
from .annotate import send_to_annotation
from .charts import prob_bars, timeline
from .components import action_buttons, segments_table
from .messages import HEAVY, for_api, notes, problem, segment_rows, stage_reporter, top, top_classes

EXAMPLES = ROOT / "examples"
GALLERY_SIZE = 8
VIDEO_HEIGHT = 320  # px: the player leaves the results in view on a laptop screen


def face_gallery(result: dict, size: int = GALLERY_SIZE) -> list[tuple[np.ndarray, str]]:
    """Up to ``size`` of the main speaker's faces from an analysed clip, evenly spread
    over it, each with a caption (time and top emotion), for the app's gallery. The
    frames are decoded again (the result keeps boxes, not pixels)."""
    faced = [f for f in result.get("frames", []) if f["face"]]
    if not faced:
        return []
    picks = {int(k) for k in np.linspace(0, len(faced) - 1, min(size, len(faced))).round()}
    wanted = {round(faced[k]["time"] * result["sampled_fps"]): faced[k] for k in picks}
    info = probe(result["input"])
    gallery = []
    for t, frame in sample_frames(result["input"], info, result["sampled_fps"], []):
        face = wanted.get(round(t * result["sampled_fps"]))
        if face is not None:
            x1, y1, x2, y2 = (round(v) for v in face["box"])
            crop = frame[max(0, y1):max(0, y2), max(0, x1):max(0, x2)]
            gallery.append((crop.copy(), f"{face['time']:.1f}s {face['label']}"))
        if len(gallery) == len(wanted):
            break
    return gallery


def analyze_video(path: str | None, method: str = "late", progress=gr.Progress()):
    """Video tab: face/voice/text/fused bars, a per-second timeline, sampled face crops and
    the speech segments (what was said when, and how it sounded and read)."""
    if not path:
        return None, None, [], "Upload a clip or record one with the webcam.", None, None, []
    result = classify("video", [path], fusion=method or "late", progress=stage_reporter(progress))[0]
    if "error" in result:
        return None, None, [], problem(result, path), None, for_api(result, path), []
    series = {name: m["probs"] for name, m in result["modalities"].items()} | {"fused": result["probs"]}
    bars = prob_bars(series, f"Video ({result.get('fusion', 'late')} fusion)")
    points = [{"start": p["second"], "end": p["second"] + 1, "probs": p["fused"]} for p in result["timeline"]
              if p["fused"]]  # a second with neither a face nor speech has nothing to plot
    per_second = timeline(points, "Fused emotion per second", "fused") if points else None
    transcript = result.get("transcript")
    message = (f"Fused: {top(result)} from {', '.join(result['modalities'])}"
               + (f"\n\n**Transcript:** {markdown_escape(transcript)}" if transcript else "") + notes(result))
    segments = result["modalities"].get("voice", {}).get("segments", [])
    return (bars, per_second, face_gallery(result), message, top_classes(result), for_api(result, path),
            segment_rows(segments))


def build() -> None:
    video_in = gr.Video(sources=["upload", "webcam"], label="Clip", height=VIDEO_HEIGHT, elem_id="video-in")
    video_method = gr.Dropdown(list(METHODS), value="late", label="Fusion method", elem_id="video-method")
    video_btn, video_send = action_buttons("video")
    video_msg = gr.Markdown(elem_id="video-msg")
    video_faces = gr.Gallery(label="Sampled face frames", columns=8, height=190, elem_id="video-faces")
    with gr.Row():
        video_plot = gr.Plot(label="Face, voice, text and fused", elem_id="video-plot")
        video_timeline = gr.Plot(label="Per-second timeline", elem_id="video-timeline")
    with gr.Row():
        video_label = gr.Label(num_top_classes=3, label="Fused", elem_id="video-label")
        video_json = gr.JSON(label="Result (as the API answers)", open=False, elem_id="video-json")
    video_segments = segments_table("video")
    video_outputs = [video_plot, video_timeline, video_faces, video_msg, video_label, video_json, video_segments]
    examples = gr.Examples([[str(EXAMPLES / "astronaut_happy.mp4")]], inputs=video_in, elem_id="video-examples")
    run_on_click(examples, analyze_video, [video_in, video_method], video_outputs, **HEAVY)
    on(video_btn.click, analyze_video, [video_in, video_method], video_outputs, limited=True, api_name="video", **HEAVY)
    on(video_send.click, partial(send_to_annotation, "video"), video_in, video_msg, signed_in=True, limited=True,
       api_name="send_video")
