"""The Audio tab: voice, transcript and fused emotion, and a timeline of speech segments."""
from __future__ import annotations

from functools import partial

import gradio as gr

from ..core.paths import ROOT
from ..pipelines import classify
from .annotate import send_to_annotation
from .charts import prob_bars, timeline
from .messages import notes, problem, top

EXAMPLES = ROOT / "examples"


def analyze_audio(path: str | None):
    """Audio tab: voice/text/fused bars, a timeline of speech segments, the transcript."""
    if not path:
        return None, None, "Upload or record a voice clip."
    result = classify("audio", [path])[0]
    if "error" in result:
        return None, None, problem(result, path)
    series = {"voice": result["probs"]}
    if "text" in result.get("modalities", {}):
        series["text"] = result["modalities"]["text"]["probs"]
    if "fused" in result:
        series["fused"] = result["fused"]["probs"]
    transcript = result.get("transcript")
    message = (f"Voice: {top(result)} — `{result['model']}`, {len(result['segments'])} speech segment(s)"
               + (f"\n\nFused with the transcript's text emotion: {top(result['fused'])}" if "fused" in result else "")
               + (f"\n\n**Transcript:** {transcript}" if transcript else "\n\n_No words recognised._")
               + notes(result))
    return prob_bars(series, "Voice emotion"), timeline(result["segments"], "Speech segments", "voice"), message


def build() -> None:
    audio_in = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Voice clip", elem_id="audio-in")
    with gr.Row():
        audio_btn = gr.Button("Analyse", variant="primary", elem_id="audio-btn")
        audio_send = gr.Button("Send to annotation", elem_id="audio-send")
    audio_msg = gr.Markdown(elem_id="audio-msg")
    with gr.Row():
        audio_plot = gr.Plot(label="Voice, text and fused", elem_id="audio-plot")
        audio_timeline = gr.Plot(label="Timeline", elem_id="audio-timeline")
    gr.Examples([[str(EXAMPLES / n)] for n in ("speech_happy.wav", "speech_angry.wav", "speech_sad.wav")],
                inputs=audio_in, elem_id="audio-examples")
    audio_btn.click(analyze_audio, audio_in, [audio_plot, audio_timeline, audio_msg], api_name="audio")
    audio_send.click(partial(send_to_annotation, "audio"), audio_in, audio_msg, api_name="send_audio")
