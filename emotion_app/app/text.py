"""The Text tab: one text's emotion, or a dialogue's turn by turn."""
from __future__ import annotations

import gradio as gr

from ..core.paths import ROOT
from ..pipelines import classify
from .access import on, run_on_click
from .annotate import send_text_to_annotation
from .charts import dialogue_arc, prob_bars
from .components import action_buttons
from .messages import notes, top, top_classes

EXAMPLES = ROOT / "examples"
MAX_DIALOGUE_LINES = 500  # ~15 s of one worker; longer transcripts belong to the CLI


def _encodable(result: dict) -> dict:
    """A result whose texts the answer can carry: bytes that were not UTF-8 (surrogate
    escapes from the API) written backslash-escaped, as the answer's JSON cannot hold them."""
    return {k: v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v
            for k, v in result.items()}


def analyze_text(text: str, dialogue: bool = False):
    """Text tab: bars for one text, or per-utterance rows for a dialogue; also the top
    classes and the results as the API answers (one result, or a list for a dialogue)."""
    lines = [line for line in (text or "").splitlines() if line.strip()] if dialogue else [text]
    if not lines:
        empty = {"input": text or "", "error": "empty text: type or paste something to classify"}
        return None, [], f"⚠️ {empty['error']}.", None, [empty] if dialogue else empty
    cut = ""
    if len(lines) > MAX_DIALOGUE_LINES:
        cut = (f"\n\n_Note: only the first {MAX_DIALOGUE_LINES} of {len(lines)} lines were classified; "
               "`python -m emotion_app predict --modality text --dialogue` takes any length._")
        lines = lines[:MAX_DIALOGUE_LINES]
    results = [_encodable(r) for r in classify("text", lines, dialogue=dialogue)]
    rows = [[r.get("speaker") or "", r.get("text", r["input"]), r.get("label", "error"),
             round(r["probs"][r["label"]], 3) if "probs" in r else r["error"]] for r in results]
    ok = [r for r in results if "error" not in r]
    answer = results if dialogue else results[0]
    if not ok:
        return None, rows if dialogue else [], f"⚠️ {results[0]['error']}", None, answer
    if dialogue:
        turns = [(f"{r['speaker'] + ': ' if r.get('speaker') else ''}{r['text'][:80]}", r["probs"]) for r in ok]
        line_notes = [f"line {i}: {note}" for i, r in enumerate(results, 1) for note in r.get("notes", [])]
        message = (f"{len(ok)} of {len(lines)} utterances classified with the turns around them as context "
                   f"(`{ok[0]['model']}`).{cut}" + notes({"notes": line_notes[:5]})
                   + (f"\n\n_…and {len(line_notes) - 5} more notes._" if len(line_notes) > 5 else ""))
        return dialogue_arc(turns, "Emotion turn by turn"), rows, message, None, answer
    message = f"{top(ok[0])} — model `{ok[0]['model']}`{notes(ok[0])}"
    return prob_bars({"text": ok[0]["probs"]}, "Text emotion"), rows, message, top_classes(ok[0]), answer


def build() -> None:
    text_in = gr.Textbox(lines=4, label="Text, or a dialogue: one 'Speaker: utterance' per line", elem_id="text-in")
    dialogue = gr.Checkbox(label="Dialogue (read each line with the turns around it)", elem_id="dialogue")
    text_btn, text_send = action_buttons("text")
    text_msg = gr.Markdown(elem_id="text-msg")
    with gr.Row():
        text_plot = gr.Plot(label="Probabilities", elem_id="text-plot", scale=2)
        text_label = gr.Label(num_top_classes=3, label="Top classes", elem_id="text-label", scale=1)
    text_rows = gr.Dataframe(headers=["speaker", "text", "label", "confidence"], label="Per utterance", wrap=True,
                             max_chars=300, column_widths=["14%", "56%", "15%", "15%"], elem_id="text-rows")
    text_json = gr.JSON(label="Result (as the API answers)", open=False, elem_id="text-json")
    text_outputs = [text_plot, text_rows, text_msg, text_label, text_json]
    examples = gr.Examples([[t, False] for t in (EXAMPLES / "texts.txt").read_text().splitlines()]
                           + [[(EXAMPLES / "dialogue.txt").read_text(), True]], inputs=[text_in, dialogue],
                           elem_id="text-examples")
    run_on_click(examples, analyze_text, [text_in, dialogue], text_outputs)
    on(text_btn.click, analyze_text, [text_in, dialogue], text_outputs, limited=True, api_name="text")
    on(text_send.click, send_text_to_annotation, [text_in, dialogue], text_msg, signed_in=True, limited=True,
       api_name="send_text")
