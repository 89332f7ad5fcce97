"""Emotion recognition app: face, text, voice, video and their fusion.

Run ``python app.py`` (offline, bundled weights). The tabs only wire components to the
functions in ``emotion_app.ui``; every function also has an API endpoint (api_name).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import partial
from importlib import metadata
from pathlib import Path

import gradio as gr
from packaging.requirements import Requirement

from emotion_app import ui
from emotion_app.annotation_ui import build_annotate_tab, send_to_annotation
from emotion_app.finetune_ui import build_finetune_tab
from emotion_app.fusion import METHODS

log = logging.getLogger("app")
ROOT = Path(__file__).resolve().parent
NODEPS_REQUIREMENTS = ROOT / "requirements-nodeps.txt"
EX = ROOT / "examples"
MAX_UPLOAD = "200mb"


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


def install_nodeps_packages(requirements: Path = NODEPS_REQUIREMENTS) -> list[str]:
    """Install the packages of ``requirements`` that are missing, with ``--no-deps``.

    A Space pip-installs requirements.txt only, and these packages cannot go there: their
    metadata pins an old torch that pip would then install over ours. Called once at the
    Space's start-up (never at import); returns what it installed.
    """
    missing = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            metadata.version(Requirement(line).name)
        except metadata.PackageNotFoundError:
            missing.append(line)
    if missing:
        log.info("installing with --no-deps: %s", " ".join(missing))
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *missing], check=True)
    return missing


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Emotion recognition") as demo:
        gr.Markdown("# Emotion recognition\nFace, text, voice and video, per modality and fused. "
                    "Seven classes: angry, disgust, fear, happy, neutral, sad, surprise.")
        with gr.Tab("Image"):
            with gr.Row():
                image_in = Photo(type="filepath", sources=["upload", "webcam"], label="Photo", elem_id="image-in")
                image_out = gr.Image(label="Faces found", interactive=False, elem_id="image-out")
            with gr.Row():
                image_btn = gr.Button("Analyse", variant="primary", elem_id="image-btn")
                image_send = gr.Button("Send to annotation", elem_id="image-send")
            image_msg = gr.Markdown(elem_id="image-msg")
            image_plot = gr.Plot(label="Per-face probabilities", elem_id="image-plot")
            gr.Examples([[str(EX / "astronaut.jpg")], [str(EX / "two_faces.jpg")]], inputs=image_in, elem_id="image-examples")
            image_btn.click(ui.analyze_image, image_in, [image_out, image_plot, image_msg], api_name="image")
            image_send.click(partial(send_to_annotation, "image"), image_in, image_msg, api_name="send_image")

        with gr.Tab("Text"):
            text_in = gr.Textbox(lines=4, label="Text, or a dialogue: one 'Speaker: utterance' per line", elem_id="text-in")
            dialogue = gr.Checkbox(label="Dialogue (read each line with the turns around it)", elem_id="dialogue")
            with gr.Row():
                text_btn = gr.Button("Analyse", variant="primary", elem_id="text-btn")
                text_send = gr.Button("Send to annotation", elem_id="text-send")
            text_msg = gr.Markdown(elem_id="text-msg")
            text_plot = gr.Plot(label="Probabilities", elem_id="text-plot")
            text_rows = gr.Dataframe(headers=["speaker", "text", "label", "confidence"], label="Per utterance", wrap=True,
                                     max_chars=300, column_widths=["14%", "56%", "15%", "15%"], elem_id="text-rows")
            gr.Examples([[t, False] for t in (EX / "texts.txt").read_text().splitlines()]
                        + [[(EX / "dialogue.txt").read_text(), True]], inputs=[text_in, dialogue], elem_id="text-examples")
            text_btn.click(ui.analyze_text, [text_in, dialogue], [text_plot, text_rows, text_msg], api_name="text")
            text_send.click(partial(send_to_annotation, "text"), text_in, text_msg, api_name="send_text")

        with gr.Tab("Audio"):
            audio_in = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Voice clip", elem_id="audio-in")
            with gr.Row():
                audio_btn = gr.Button("Analyse", variant="primary", elem_id="audio-btn")
                audio_send = gr.Button("Send to annotation", elem_id="audio-send")
            audio_msg = gr.Markdown(elem_id="audio-msg")
            with gr.Row():
                audio_plot = gr.Plot(label="Voice, text and fused", elem_id="audio-plot")
                audio_timeline = gr.Plot(label="Timeline", elem_id="audio-timeline")
            gr.Examples([[str(EX / n)] for n in ("speech_happy.wav", "speech_angry.wav", "speech_sad.wav")],
                        inputs=audio_in, elem_id="audio-examples")
            audio_btn.click(ui.analyze_audio, audio_in, [audio_plot, audio_timeline, audio_msg], api_name="audio")
            audio_send.click(partial(send_to_annotation, "audio"), audio_in, audio_msg, api_name="send_audio")

        with gr.Tab("Video"):
            video_in = gr.Video(sources=["upload", "webcam"], label="Clip", elem_id="video-in")
            video_method = gr.Dropdown(list(METHODS), value="late", label="Fusion method", elem_id="video-method")
            with gr.Row():
                video_btn = gr.Button("Analyse", variant="primary", elem_id="video-btn")
                video_send = gr.Button("Send to annotation", elem_id="video-send")
            video_msg = gr.Markdown(elem_id="video-msg")
            video_faces = gr.Gallery(label="Sampled face frames", columns=8, height=190, elem_id="video-faces")
            with gr.Row():
                video_plot = gr.Plot(label="Face, voice, text and fused", elem_id="video-plot")
                video_timeline = gr.Plot(label="Per-second timeline", elem_id="video-timeline")
            gr.Examples([[str(EX / "astronaut_happy.mp4")]], inputs=video_in, elem_id="video-examples")
            video_btn.click(ui.analyze_video, [video_in, video_method], [video_plot, video_timeline, video_faces, video_msg],
                            api_name="video")
            video_send.click(partial(send_to_annotation, "video"), video_in, video_msg, api_name="send_video")

        with gr.Tab("Tri-modal"):
            with gr.Row():
                tri_image = Photo(type="filepath", label="Face photo", elem_id="tri-image")
                with gr.Column():
                    tri_text = gr.Textbox(lines=3, label="Text", elem_id="tri-text")
                    tri_audio = gr.Audio(type="filepath", label="Voice clip", elem_id="tri-audio")
            w_image, w_text, w_audio = ui.default_slider_weights()
            with gr.Row():
                s_image = gr.Slider(0, 1, value=w_image, step=0.01, label="Face weight", elem_id="s-image")
                s_text = gr.Slider(0, 1, value=w_text, step=0.01, label="Text weight", elem_id="s-text")
                s_audio = gr.Slider(0, 1, value=w_audio, step=0.01, label="Voice weight", elem_id="s-audio")
            tri_method = gr.Dropdown(list(METHODS), value="late", label="Fusion method", elem_id="tri-method")
            tri_btn = gr.Button("Analyse", variant="primary", elem_id="tri-btn")
            tri_msg = gr.Markdown(elem_id="tri-msg")
            tri_plot = gr.Plot(label="Fused", elem_id="tri-plot")
            tri_probs = gr.State({})
            gr.Examples([[str(EX / "astronaut.jpg"), "I just got the job, I'm so happy!", str(EX / "speech_happy.wav")]],
                        inputs=[tri_image, tri_text, tri_audio], elem_id="tri-examples")
            fuse_inputs = [tri_probs, tri_method, s_image, s_text, s_audio]
            tri_btn.click(ui.trimodal_inputs, [tri_image, tri_text, tri_audio], [tri_probs, tri_msg],
                          api_name="trimodal").then(ui.trimodal_fuse, fuse_inputs, [tri_plot, tri_msg, tri_probs],
                                                    api_name="trimodal_fuse")
            for control in fuse_inputs[1:]:  # re-fuse stored results: no modality model runs again
                control.change(ui.trimodal_fuse, fuse_inputs, [tri_plot, tri_msg, tri_probs], api_visibility="private")

        with gr.Tab("Annotate"):
            build_annotate_tab()

        with gr.Tab("Fine-tune"):
            build_finetune_tab()

        with gr.Tab("Models"):
            models = gr.Dataframe(ui.models_table, headers=["model", "modality", "architecture", "source", "active",
                                                            "evaluated on", "accuracy", "weighted F1"],
                                  label="Registry", interactive=False, elem_id="models")
            with gr.Row():
                model_pick = gr.Dropdown([row[0] for row in ui.models_table()], value=None, label="Model",
                                         elem_id="model-pick")
                activate_btn = gr.Button("Make active", elem_id="activate-btn")
            models_msg = gr.Markdown(elem_id="models-msg")
            card_plot = gr.Plot(label="Confusion matrix", elem_id="card-plot")
            card_md = gr.Markdown(elem_id="card-md")
            model_pick.change(ui.model_card, model_pick, [card_md, card_plot], api_name="model_card")
            model_pick.change(lambda: "", None, models_msg, api_visibility="private")  # the last switch's message is stale
            activate_btn.click(ui.activate, model_pick, [models, models_msg], api_name="activate")
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.environ.get("SPACE_ID"):
        install_nodeps_packages()
    demo = build_app()
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), max_file_size=MAX_UPLOAD)


if __name__ == "__main__":
    main()
