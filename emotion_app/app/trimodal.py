"""The Tri-modal tab: a face photo, a text and a voice clip, each read once, then fused
again on every slider or method change without running the models again."""
from __future__ import annotations

import gradio as gr

from ..core.errors import InputError, ModelNotFound
from ..core.inputs import with_file_names
from ..core.paths import ROOT
from ..models.fusion import METHODS, default_weights, late_fusion
from ..pipelines import classify
from ..pipelines.fusion import fuse, input_features
from .charts import prob_bars
from .components import Photo
from .messages import MODALITY_NAMES, top

EXAMPLES = ROOT / "examples"


def trimodal_inputs(image: str | None, text: str | None, audio: str | None):
    """Tri-modal tab, step 1: run each given modality once. Returns what step 2 fuses
    (kept in a gr.State: probabilities, the inputs, features per learned method) and a
    message about what failed or was read with a caveat, which step 2 repeats under the result."""
    probs, inputs, notes = {}, {}, []
    for modality, value in (("image", image), ("text", text), ("audio", audio)):
        if not value or (isinstance(value, str) and not value.strip()):
            continue
        options = {"transcribe": False} if modality == "audio" else {}
        result = classify(modality, [value], **options)[0]
        name = MODALITY_NAMES[modality]
        if "error" in result:
            error = result["error"] if modality == "text" else with_file_names(result["error"], [value])
            notes.append(f"⚠️ {name} left out: {error}")
        else:
            probs[modality], inputs[modality] = result["probs"], value
            notes += [f"_{name}: {note}_" for note in result.get("notes", [])]
    message = "\n\n".join(notes)
    return {"probs": probs, "inputs": inputs, "features": {}, "message": message}, message


def trimodal_fuse(state: dict, method: str, w_image: float, w_text: float, w_audio: float):
    """Tri-modal tab, step 2 (on every slider or method change): fuse what step 1 stored.
    Late fusion uses the sliders; a learned method computes its features once per input."""
    probs = (state or {}).get("probs")
    if not probs:
        return None, (state or {}).get("message") or "Give at least one of image, text or audio, then press Analyse.", state
    try:
        if method == "late":
            fused = late_fusion(probs, {"image": w_image, "text": w_text, "audio": w_audio})
        else:
            if method not in state["features"]:
                state["features"][method] = input_features(method, **state["inputs"])
            fused = fuse(method, probs, state["features"][method])
    except (ValueError, InputError) as exc:
        return None, f"⚠️ {exc}", state
    series = {MODALITY_NAMES[m]: p for m, p in probs.items()} | {"fused": fused["probs"]}
    how = ("weights " + ", ".join(f"{MODALITY_NAMES[m]} {w:.2f}" for m, w in fused["weights"].items())
           if "weights" in fused else f"learned fusion `{fused['model']}` (sliders apply to late fusion)")
    message = f"Fused: {top(fused)} — {how}" + (f"\n\n{state['message']}" if state.get("message") else "")
    return prob_bars(series, f"Tri-modal fusion ({method})"), message, state


def default_slider_weights() -> list[float]:
    """Validation weighted F1 of each modality's active model (0 if it has none)."""
    weights = []
    for m in ("image", "text", "audio"):
        try:
            weights.append(round(default_weights([m])[m], 3))
        except ModelNotFound:
            weights.append(0.0)
    return weights


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
    tri_method = gr.Dropdown(list(METHODS), value="late", label="Fusion method", elem_id="tri-method")
    tri_btn = gr.Button("Analyse", variant="primary", elem_id="tri-btn")
    tri_msg = gr.Markdown(elem_id="tri-msg")
    tri_plot = gr.Plot(label="Fused", elem_id="tri-plot")
    tri_probs = gr.State({})
    gr.Examples([[str(EXAMPLES / "astronaut.jpg"), "I just got the job, I'm so happy!", str(EXAMPLES / "speech_happy.wav")]],
                inputs=[tri_image, tri_text, tri_audio], elem_id="tri-examples")
    fuse_inputs = [tri_probs, tri_method, s_image, s_text, s_audio]
    tri_btn.click(trimodal_inputs, [tri_image, tri_text, tri_audio], [tri_probs, tri_msg],
                  api_name="trimodal").then(trimodal_fuse, fuse_inputs, [tri_plot, tri_msg, tri_probs],
                                            api_name="trimodal_fuse")
    for control in fuse_inputs[1:]:  # re-fuse stored results: no modality model runs again
        control.change(trimodal_fuse, fuse_inputs, [tri_plot, tri_msg, tri_probs], api_visibility="private")
