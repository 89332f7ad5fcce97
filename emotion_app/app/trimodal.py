"""The Tri-modal tab: a face photo, a text and a voice clip, each read once, then fused
again on every slider or method change without running the models again."""
from __future__ import annotations

import gradio as gr

from ..core.errors import InputError, ModelNotFound
from ..core.inputs import markdown_escape, with_file_names
from ..core.paths import ROOT
from ..models.fusion import METHODS, default_weights, late_fusion
from ..pipelines import classify
from ..pipelines.fusion import fuse, input_features
from .access import on, run_on_click
from .charts import prob_bars
from .components import Photo
from .messages import HEAVY, MODALITY_NAMES, for_api, top, top_classes, warning

EXAMPLES = ROOT / "examples"


def trimodal_inputs(image: str | None, text: str | None, audio: str | None):
    """Tri-modal tab, step 1: run each given modality once. Returns what step 2 fuses
    (kept in a gr.State: probabilities, the inputs, features per learned method) and a
    message about what failed or was read with a caveat, which step 2 repeats under the result."""
    probs, inputs, notes, results, left_out = {}, {}, [], {}, {}
    for modality, value in (("image", image), ("text", text), ("audio", audio)):
        if not value or (isinstance(value, str) and not value.strip()):
            continue
        options = {"transcribe": False} if modality == "audio" else {}
        result = classify(modality, [value], **options)[0]
        name = MODALITY_NAMES[modality]
        if "error" in result:
            left_out[name] = result["error"] if modality == "text" else with_file_names(result["error"], [value])
        elif modality == "image" and not result["face_detected"]:  # a landscape is not an angry face
            left_out[name] = "no face found in the photo"
        else:
            probs[modality], inputs[modality] = result["probs"], value
            results[name] = for_api({k: v for k, v in result.items() if k != "input"}, value)
            notes += [f"_{name}: {note}_" for note in result.get("notes", [])]
    notes = [f"⚠️ {name} left out: {markdown_escape(why)}" for name, why in left_out.items()] + notes
    message = "\n\n".join(notes)
    state = {"probs": probs, "inputs": inputs, "features": {}, "message": message, "results": results,
             "left_out": left_out}
    return state, message


def trimodal_fuse(state: dict, method: str, w_image: float, w_text: float, w_audio: float):
    """Tri-modal tab, step 2 (on every slider or method change): fuse what step 1 stored.
    Late fusion uses the sliders; a learned method computes its features once per input."""
    probs, left_out = (state or {}).get("probs"), (state or {}).get("left_out", {})
    if not probs:  # the answer names each input's own reason under left_out, the page repeats them
        message = (state or {}).get("message") or "Give at least one of image, text or audio, then press Analyse."
        error = "none of the inputs could be read" if left_out else "no input: give an image, a text or audio"
        return None, message, state, None, {"error": error, "left_out": left_out}
    method = method or "late"  # no method picked: the default
    try:
        if method == "late":
            fused = late_fusion(probs, {"image": w_image, "text": w_text, "audio": w_audio})
        else:
            if method not in state["features"]:
                state["features"][method] = input_features(method, **state["inputs"])
            fused = fuse(method, probs, state["features"][method])
    except (ValueError, InputError, ModelNotFound) as exc:  # an unknown method names the known ones
        return None, warning(exc), state, None, {"error": str(exc), "left_out": left_out}
    series = {MODALITY_NAMES[m]: p for m, p in probs.items()} | {"fused": fused["probs"]}
    how = ("weights " + ", ".join(f"{MODALITY_NAMES[m]} {w:.2f}" for m, w in fused["weights"].items())
           if "weights" in fused else f"learned fusion `{fused['model']}` (sliders apply to late fusion)")
    message = f"### Fused: {top(fused)}\n\n{how}" + (f"\n\n{state['message']}" if state.get("message") else "")
    answer = {**fused, "method": method, "modalities": state["results"], "left_out": left_out}
    return prob_bars(series, f"Tri-modal fusion ({method})"), message, state, top_classes(fused), answer


def trimodal(image: str | None, text: str | None, audio: str | None, method: str = "late",
             w_image: float | None = None, w_text: float | None = None, w_audio: float | None = None):
    """Tri-modal tab, one call: read each given input, then fuse (``/trimodal``). Weights
    left out are the default slider weights."""
    defaults = default_slider_weights()
    weights = [d if w is None else w for w, d in zip((w_image, w_text, w_audio), defaults)]
    state, _ = trimodal_inputs(image, text, audio)
    plot, message, state, label, answer = trimodal_fuse(state, method, *weights)
    return state, plot, message, label, answer


def default_slider_weights() -> list[float]:
    """Each modality's share of the late fusion: its active model's validation weighted F1
    (0 if it has none) over their sum, as the message shows the weights it fused with."""
    scores = []
    for m in ("image", "text", "audio"):
        try:
            scores.append(default_weights([m])[m])
        except ModelNotFound:
            scores.append(0.0)
    total = sum(scores) or 1.0
    return [round(score / total, 2) for score in scores]


def sliders_for(method: str):
    """The weight sliders apply to late fusion only: a learned method's are shown disabled."""
    return [gr.Slider(interactive=method == "late")] * 3


def build() -> None:
    with gr.Row():
        tri_image = Photo(type="filepath", label="Face photo", elem_id="tri-image")
        with gr.Column():
            tri_text = gr.Textbox(lines=3, label="Text", elem_id="tri-text")
            tri_audio = gr.Audio(type="filepath", label="Voice clip", elem_id="tri-audio")
    w_image, w_text, w_audio = default_slider_weights()
    with gr.Row():
        s_image = gr.Slider(0, 1, value=w_image, step=0.01, label="Face weight", elem_id="s-image")
        s_text = gr.Slider(0, 1, value=w_text, step=0.01, label="Text weight", elem_id="s-text")
        s_audio = gr.Slider(0, 1, value=w_audio, step=0.01, label="Voice weight", elem_id="s-audio")
    gr.Markdown("Late-fusion weights, relative: they are divided by their sum over the inputs given "
                "(the message shows the shares used).", elem_id="tri-weights-note")
    tri_method = gr.Dropdown(list(METHODS), value="late", label="Fusion method", elem_id="tri-method")
    tri_btn = gr.Button("Analyse", variant="primary", elem_id="tri-btn")
    tri_msg = gr.Markdown(elem_id="tri-msg")
    with gr.Row():
        tri_plot = gr.Plot(label="Fused", elem_id="tri-plot", scale=2)
        tri_label = gr.Label(num_top_classes=3, label="Fused", elem_id="tri-label", scale=1)
    tri_json = gr.JSON(label="Result (as the API answers)", open=False, elem_id="tri-json")
    tri_probs = gr.State({})
    fuse_inputs = [tri_probs, tri_method, s_image, s_text, s_audio]
    fused_outputs = [tri_plot, tri_msg, tri_probs, tri_label, tri_json]
    tri_outputs = [tri_probs, tri_plot, tri_msg, tri_label, tri_json]
    examples = gr.Examples([[str(EXAMPLES / "astronaut.jpg"), "I just got the job, I'm so happy!",
                             str(EXAMPLES / "speech_happy.wav")]], inputs=[tri_image, tri_text, tri_audio],
                           elem_id="tri-examples")
    run_on_click(examples, trimodal, [tri_image, tri_text, tri_audio, *fuse_inputs[1:]], tri_outputs, **HEAVY)
    on(tri_btn.click, trimodal, [tri_image, tri_text, tri_audio, *fuse_inputs[1:]], tri_outputs, limited=True,
       api_name="trimodal", **HEAVY)
    tri_method.change(sliders_for, tri_method, [s_image, s_text, s_audio], api_visibility="private")
    for control in fuse_inputs[1:]:  # re-fuse stored results: no modality model runs again
        control.change(trimodal_fuse, fuse_inputs, fused_outputs, api_visibility="private")
