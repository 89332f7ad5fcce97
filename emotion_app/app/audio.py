"""The Audio tab: voice, transcript and fused emotion, and a timeline of speech segments."""
from __future__ import annotations

from functools import partial

import gradio as gr

from ..core.inputs import markdown_escape
from ..core.paths import ROOT
from ..pipelines import classify
from .access import on, run_on_click
from .annotate import send_to_annotation
from .charts import prob_bars, timeline
from .components import action_buttons, segments_table
from .messages import HEAVY, for_api, notes, problem, segment_rows, stage_reporter, top, top_classes

EXAMPLES = ROOT / "examples"


def analyze_audio(path: str | None, progress=gr.Progress()):
    """Audio tab: voice/text/fused bars, a timeline and a table of speech segments, the
    transcript. When the words were read too, the headline is their fusion with the voice,
    for the clip and for each segment."""
    if not path:
        return None, None, "Upload or record a voice clip.", None, None, []
    result = classify("audio", [path], progress=stage_reporter(progress))[0]
    if "error" in result:
        return None, None, problem(result, path), None, for_api(result, path), []
    series = {"voice": result["probs"]}
    if "text" in result.get("modalities", {}):
        series["text"] = result["modalities"]["text"]["probs"]
    if "fused" in result:
        series["fused"] = result["fused"]["probs"]
    transcript = result.get("transcript")
    words = result.get("modalities", {}).get("text")
    if words:
        headline = (f"### {top(result['fused'])} (voice and words)\n\nVoice: {top(result)} — `{result['model']}`, "
                    f"{len(result['segments'])} speech segment(s) · words: {top(words)} — `{words['model']}`")
    else:
        headline = f"### {top(result)} (voice) — `{result['model']}`, {len(result['segments'])} speech segment(s)"
    words_line = f"**Transcript:** {markdown_escape(transcript)}" if transcript else "_No words recognised._"
    message = f"{headline}\n\n{words_line}{notes(result)}"
    shown = result["fused"] if words else result
    fused_segments = [{**s, **s["fused"]} if "fused" in s else s for s in result["segments"]]
    chart = (timeline(fused_segments, "Emotion per speech segment (voice and words)", "fused") if words
             else timeline(result["segments"], "Voice emotion per speech segment", "voice"))
    bars = prob_bars(series, "Voice, words and fused" if words else "Voice emotion")
    return bars, chart, message, top_classes(shown), for_api(result, path), segment_rows(result["segments"])


def build() -> None:
    audio_in = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Voice clip", elem_id="audio-in")
    audio_btn, audio_send = action_buttons("audio")
    audio_msg = gr.Markdown(elem_id="audio-msg")
    with gr.Row():
        audio_plot = gr.Plot(label="Voice, text and fused", elem_id="audio-plot")
        audio_timeline = gr.Plot(label="Timeline", elem_id="audio-timeline")
    with gr.Row():
        audio_label = gr.Label(num_top_classes=3, label="Fused (voice and words)", elem_id="audio-label")
        audio_json = gr.JSON(label="Result (as the API answers)", open=False, elem_id="audio-json")
    audio_segments = segments_table("audio")
    audio_outputs = [audio_plot, audio_timeline, audio_msg, audio_label, audio_json, audio_segments]
    examples = gr.Examples([[str(EXAMPLES / n)] for n in ("speech_happy.wav", "speech_angry.wav", "speech_sad.wav")],
                inputs=audio_in, elem_id="audio-examples")
    run_on_click(examples, analyze_audio, audio_in, audio_outputs, **HEAVY)
    on(audio_btn.click, analyze_audio, audio_in, audio_outputs, limited=True, api_name="audio", **HEAVY)
    on(audio_send.click, partial(send_to_annotation, "audio"), audio_in, audio_msg, signed_in=True, limited=True,
       api_name="send_audio")
