"""What each tab of the app does, as plain functions that the UI wires and tests call.

Each function takes what the components give (file paths, text, slider values) and
returns what they show (figures, images, tables, a Markdown message). Problems with the
input come back as a message, never as an exception, so the app never crashes on them.
"""
from __future__ import annotations


from .charts import confusion_heatmap, dialogue_arc, prob_bars, timeline
from .fusion import default_weights, fuse, input_features, late_fusion
from .inputs import InputError, with_file_names
from .pipeline import classify
from .registry import ModelNotFound, active_model, get_entry, list_models, set_active

MODALITY_NAMES = {"image": "face", "text": "text", "audio": "voice", "video": "video"}
MAX_DIALOGUE_LINES = 500  # ~15 s of one worker; longer transcripts belong to the CLI


def _top(result: dict) -> str:
    return f"**{result['label']}** ({result['probs'][result['label']]:.0%})"


def _notes(result: dict) -> str:
    return "".join(f"\n\n_Note: {n}_" for n in result.get("notes", []))


def _problem(result: dict, path: str) -> str:
    """A failed result's message, naming the upload by its file name."""
    return f"⚠️ {with_file_names(result['error'], [path])}"


def analyze_image(path: str | None):
    """Image tab: the photo with a labelled box per face, and per-face probability bars."""
    if not path:
        return None, None, "Upload a photo or take one with the webcam."
    result = classify("image", [path])[0]
    if "error" in result:
        return None, None, _problem(result, path)
    from .image import draw_faces
    faces = result["faces"]
    if result["face_detected"]:
        series, title = {f"face {i + 1}": f["probs"] for i, f in enumerate(faces)}, "Per-face probabilities"
        message = f"{len(faces)} face(s) found; main face: {_top(result)} — model `{result['model']}`{_notes(result)}"
    else:  # classified whole, as a ready-made face crop (the result's note): only meaningful for a close-up face
        series, title = {"whole image": result["probs"]}, "Whole image (no face found)"
        message = (f"**No face found.** Read whole, as if it were a close-up face crop: {_top(result)} — model "
                   f"`{result['model']}`. Trust this only for a picture that is a face.")
    return draw_faces(path, faces), prob_bars(series, title), message


def analyze_video(path: str | None, method: str = "late"):
    """Video tab: face/voice/text/fused bars, a per-second timeline, sampled face crops."""
    if not path:
        return None, None, [], "Upload a clip or record one with the webcam."
    from .video import face_gallery
    result = classify("video", [path], fusion=method)[0]
    if "error" in result:
        return None, None, [], _problem(result, path)
    series = {name: m["probs"] for name, m in result["modalities"].items()} | {"fused": result["probs"]}
    bars = prob_bars(series, f"Video ({result.get('fusion', 'late')} fusion)")
    points = [{"start": p["second"], "end": p["second"] + 1, "probs": p["fused"]} for p in result["timeline"]
              if p["fused"]]  # a second with neither a face nor speech has nothing to plot
    per_second = timeline(points, "Fused emotion per second", "fused") if points else None
    transcript = result.get("transcript")
    message = (f"Fused: {_top(result)} from {', '.join(result['modalities'])}"
               + (f"\n\n**Transcript:** {transcript}" if transcript else "") + _notes(result))
    return bars, per_second, face_gallery(result), message


def analyze_text(text: str, dialogue: bool = False):
    """Text tab: bars for one text, or per-utterance rows for a dialogue."""
    lines = [line for line in (text or "").splitlines() if line.strip()] if dialogue else [text]
    if not lines:
        return None, [], "⚠️ empty text: type or paste something to classify."
    cut = ""
    if len(lines) > MAX_DIALOGUE_LINES:
        cut = (f"\n\n_Note: only the first {MAX_DIALOGUE_LINES} of {len(lines)} lines were classified; "
               "`python -m emotion_app predict --modality text --dialogue` takes any length._")
        lines = lines[:MAX_DIALOGUE_LINES]
    results = classify("text", lines, dialogue=dialogue)
    rows = [[r.get("speaker") or "", r.get("text", r["input"]), r.get("label", "error"),
             round(r["probs"][r["label"]], 3) if "probs" in r else r["error"]] for r in results]
    ok = [r for r in results if "error" not in r]
    if not ok:
        return None, rows if dialogue else [], f"⚠️ {results[0]['error']}"
    if dialogue:
        turns = [(f"{r['speaker'] + ': ' if r.get('speaker') else ''}{r['text'][:80]}", r["probs"]) for r in ok]
        notes = [f"line {i}: {note}" for i, r in enumerate(results, 1) for note in r.get("notes", [])]
        message = (f"{len(ok)} of {len(lines)} utterances classified with the turns around them as context "
                   f"(`{ok[0]['model']}`).{cut}" + _notes({"notes": notes[:5]})
                   + (f"\n\n_…and {len(notes) - 5} more notes._" if len(notes) > 5 else ""))
        return dialogue_arc(turns, "Emotion turn by turn"), rows, message
    message = f"{_top(ok[0])} — model `{ok[0]['model']}`{_notes(ok[0])}"
    return prob_bars({"text": ok[0]["probs"]}, "Text emotion"), rows, message


def analyze_audio(path: str | None):
    """Audio tab: voice/text/fused bars, a timeline of speech segments, the transcript."""
    if not path:
        return None, None, "Upload or record a voice clip."
    result = classify("audio", [path])[0]
    if "error" in result:
        return None, None, _problem(result, path)
    series = {"voice": result["probs"]}
    if "text" in result.get("modalities", {}):
        series["text"] = result["modalities"]["text"]["probs"]
    if "fused" in result:
        series["fused"] = result["fused"]["probs"]
    transcript = result.get("transcript")
    message = (f"Voice: {_top(result)} — `{result['model']}`, {len(result['segments'])} speech segment(s)"
               + (f"\n\nFused with the transcript's text emotion: {_top(result['fused'])}" if "fused" in result else "")
               + (f"\n\n**Transcript:** {transcript}" if transcript else "\n\n_No words recognised._")
               + _notes(result))
    return prob_bars(series, "Voice emotion"), timeline(result["segments"], "Speech segments", "voice"), message


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
    message = f"Fused: {_top(fused)} — {how}" + (f"\n\n{state['message']}" if state.get("message") else "")
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


def models_table() -> list[list]:
    """Models tab: one row per registry entry."""
    rows = []
    for e in list_models():
        active = e.modality != "fusion" and active_model(e.modality).ref == e.ref
        first = next(iter(e.metrics.get("evaluations", {}).items()), (None, None))
        rows.append([e.ref, e.modality, e.architecture, e.source, "✓" if active else "",
                     first[0] or "", round(first[1]["accuracy"], 4) if first[1] else None,
                     round(first[1]["weighted_f1"], 4) if first[1] else None])
    return rows


def model_card(model: str | None):
    """Models tab: the card's Markdown and a confusion-matrix heatmap of its first evaluation."""
    if not model:
        return "Pick a model.", None
    entry = get_entry(model)
    card = (entry.folder / "README.md").read_text()
    card = card.split("---", 2)[2] if card.startswith("---") else card  # drop the Hub front matter
    head, training, rest = card.partition("\n## Training\n")
    if training:  # the training record (settings, per-epoch history) is long: folded
        card = f"{head}\n<details><summary>Training record</summary>\n\n{rest.strip()}\n\n</details>\n"
    evaluations = entry.metrics.get("evaluations", {})
    if not evaluations:
        return card, None
    name, metrics = next(iter(evaluations.items()))
    return card, confusion_heatmap(metrics["confusion_matrix"], f"{entry.ref} on {name}")


def activate(model: str | None):
    """Models tab: make the chosen model the active one for its modality."""
    if not model:
        return models_table(), "Pick a model."
    entry = get_entry(model)
    set_active(entry.modality, entry.ref)
    return models_table(), f"`{entry.ref}` is now the active {entry.modality} model."
