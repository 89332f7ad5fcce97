"""Video emotion: the main speaker's face in sampled frames, the soundtrack's voice and
words, and their fusion, for the whole clip and second by second.

Frames are sampled at ``fps`` (5 by default, as MFER) and the main speaker's face is
tracked through them (``media.tracking``); meanwhile a second thread extracts the audio
track and runs the speech pipeline on it (voice emotion, transcript, the transcript's
text emotion). The clip's face emotion is the mean of its frames' probabilities
weighted by detection confidence times the classifier's top probability
(confidence-weighted pooling), so blurred or half-turned frames count less.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..core.errors import InputError, ModelNotFound
from ..core.results import as_vector, label_probs, make_result
from ..media.speech import speech_pieces
from ..media.tracking import track_faces
from ..media.video import ClipInfo, extract_audio, probe, sampling_rate
from ..models.fusion import AUDIO, IMAGE, TEXT, fusion_model
from .audio import analyse_wave
from .base import Pipeline, ignore_progress, resolve
from .fusion import fuse, modality_features, needs_features

# Result keys for the three modalities, and the registry modality behind each.
MODALITY_KEYS = {"face": IMAGE, "voice": AUDIO, "text": TEXT}


def pooled(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.average(probs, axis=0, weights=weights)


def frame_weights(probs: np.ndarray, confidences: np.ndarray) -> np.ndarray:
    """Confidence-weighted pooling: detection confidence times the classifier's top probability."""
    return np.asarray(confidences, dtype=float) * probs.max(axis=1)


def _summary(probs: np.ndarray, model_ref: str, **extra) -> dict:
    result = make_result(None, probs, model_ref, **extra)
    del result["input"]
    return result


def _voice(path, info: ClipInfo, transcribe: bool, notes: list[str]):
    """The speech pipeline's result for the soundtrack and its speech pieces (one wave
    per timeline segment), or (None, []) with a note saying why."""
    if not info.has_audio:
        notes.append("no audio track: voice and text are not available")
        return None, []
    try:
        voice_model = resolve(AUDIO)
        wave = extract_audio(path)
        result = analyse_wave(str(path), wave, voice_model, transcribe=transcribe)
    except (InputError, ModelNotFound) as exc:
        notes.append(f"voice not available: {str(exc).removeprefix(f'{path}: ')}")
        return None, []
    return result, speech_pieces(wave, result["segments"])


def analyse_clip(path, fusion: str = "late", transcribe: bool = True, fps: float = 5.0,
                 weights: dict | None = None, progress=None) -> dict:
    """The full result for one clip (see ``predict``); InputError if nothing is usable.
    The soundtrack is analysed in a second thread while the frames are; ``progress(stage,
    fraction)`` hears of each stage of the frames as it starts."""
    progress = progress or ignore_progress
    info = probe(path)
    fps, notes = sampling_rate(info, fps)
    voice_notes: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        voice_job = pool.submit(_voice, path, info, transcribe, voice_notes)
        try:
            face_model = resolve(IMAGE)
            progress("finding and tracking the face", 0.1)
            times, track = track_faces(path, info, fps, notes)
        except ModelNotFound as exc:
            face_model, times, track = None, np.zeros(0), []
            notes.append(f"face not available: {exc}")
        progress("waiting for the soundtrack (speech, voice, transcript)", 0.7)
        voice, pieces = voice_job.result()
    notes += voice_notes
    duration = info.duration or (len(times) / fps)
    faced = [i for i, face in enumerate(track) if face is not None]
    crops = [track[i].crop for i in faced]
    modalities, frame_probs, face_weights = {}, None, None
    if crops:
        progress(f"reading the face in {len(crops)} frames", 0.8)
        frame_probs = face_model.calibrated_proba(crops)
        face_weights = frame_weights(frame_probs, [track[i].confidence for i in faced])
        face_probs = pooled(frame_probs, face_weights)
        modalities["face"] = _summary(face_probs, face_model.entry.ref, **face_model.certainty(face_probs),
                                      frames_with_face=len(faced), frames=len(track))
        if len(faced) < len(track):
            notes.append(f"no face in {len(track) - len(faced)} of {len(track)} sampled frames")
    elif face_model is not None:
        notes.append(f"no face found in any of the {len(track)} sampled frames")
    if voice is not None:
        modalities["voice"] = _summary(as_vector(voice["probs"]), voice["model"], segments=voice["segments"])
        if "text" in voice.get("modalities", {}):
            text = voice["modalities"]["text"]
            modalities["text"] = _summary(as_vector(text["probs"]), text["model"], transcript=voice["transcript"])
        elif transcribe:
            notes.append("text not available: no words recognised in the speech")
    if not modalities:
        raise InputError(f"{path}: nothing to classify: " + "; ".join(notes))

    progress("fusing", 0.9)
    features = _features(fusion, crops, face_weights, pieces, voice) if needs_features(fusion) else {}
    clip_probs = {MODALITY_KEYS[k]: v["probs"] for k, v in modalities.items()}
    fused = fuse(fusion, clip_probs, {m: f["clip"] for m, f in features.items()}, weights=weights)
    timeline = _timeline(fusion, duration, times, faced, frame_probs, face_weights,
                         voice, modalities.get("text"), features, weights)
    frames = [{"time": round(float(t), 2), "face": face is not None} for t, face in zip(times, track)]
    for k, i in enumerate(faced):
        frames[i].update(box=[round(float(v), 1) for v in track[i].box],
                         confidence=round(float(track[i].confidence), 4),
                         **label_probs(frame_probs[k]))
    result = make_result(str(path), as_vector(fused["probs"]), fused["model"], fusion=fusion,
                         duration=round(duration, 2), sampled_fps=fps, rotation=info.rotation,
                         modalities=modalities, timeline=timeline, frames=frames)
    if voice is not None and voice.get("transcript"):
        result["transcript"] = voice["transcript"]
    if "weights" in fused:  # late fusion's weights, by the modality names used above
        result["weights"] = {key: fused["weights"][m] for key, m in MODALITY_KEYS.items() if m in fused["weights"]}
    if notes:
        result["notes"] = notes
    return result


def _features(fusion: str, crops, face_weights, pieces, voice) -> dict:
    """Per-modality fusion features (see ``fusion.modality_features``): per frame or
    speech segment for the timeline, and pooled with the same weights as the
    probabilities for the clip."""
    out = {}
    if crops:
        per_frame = modality_features(fusion, IMAGE, crops)
        out[IMAGE] = {"parts": per_frame, "clip": np.average(per_frame, axis=0, weights=face_weights)}
    if voice is not None:
        per_segment = modality_features(fusion, AUDIO, pieces)
        lengths = [len(p) for p in pieces]
        out[AUDIO] = {"parts": per_segment, "clip": np.average(per_segment, axis=0, weights=lengths)}
        if "text" in voice.get("modalities", {}):
            out[TEXT] = {"clip": modality_features(fusion, TEXT, [voice["transcript"]])[0]}
    return out


def _timeline(fusion, duration, times, faced, frame_probs, face_weights, voice, text, features, weights):
    """One entry per second: the face (frames in that second), the voice and the words
    (speech segments overlapping it, by overlap: what was said then, not the whole
    transcript) and their fusion."""
    seconds = max(1, int(np.ceil(duration - 1e-6)))
    face_times = times[faced] if faced else np.zeros(0)
    segments = voice["segments"] if voice is not None else []
    out = []
    for s in range(seconds):
        probs, feats = {}, {}
        in_second = np.flatnonzero((face_times >= s) & (face_times < s + 1))
        if len(in_second) and face_weights[in_second].sum() > 0:
            probs[IMAGE] = pooled(frame_probs[in_second], face_weights[in_second])
            if IMAGE in features:
                feats[IMAGE] = np.average(features[IMAGE]["parts"][in_second], axis=0, weights=face_weights[in_second])
        overlaps = np.array([max(0.0, min(seg["end"], s + 1) - max(seg["start"], s)) for seg in segments])
        if overlaps.sum() > 0:
            probs[AUDIO] = pooled(np.stack([as_vector(seg["probs"]) for seg in segments]), overlaps)
            if AUDIO in features:
                feats[AUDIO] = np.average(features[AUDIO]["parts"], axis=0, weights=overlaps)
            said = [(seg["text"]["probs"], o) for seg, o in zip(segments, overlaps) if o > 0 and "text" in seg]
            if text is not None and said:
                probs[TEXT] = pooled(np.stack([as_vector(p) for p, _ in said]), np.array([o for _, o in said]))
                if TEXT in features:
                    feats[TEXT] = features[TEXT]["clip"]
        entry = {"second": s, "face": label_probs(probs[IMAGE])["probs"] if IMAGE in probs else None,
                 "voice": label_probs(probs[AUDIO])["probs"] if AUDIO in probs else None, "fused": None}
        if probs:
            entry["fused"] = fuse(fusion, probs, feats, weights=weights)["probs"]
        out.append(entry)
    return out


class VideoPipeline(Pipeline):
    """Video files: the fused label and probabilities at the top level, each modality's
    under ``modalities`` (face, voice, text; a missing one is absent and a note says
    why), a per-second ``timeline`` and the sampled ``frames``. ``fusion`` is a method
    (late, concat, gated, mrpn, embracenet) or a fusion model's registry id; ``model`` (a
    fusion model id) overrides it."""

    modality = "video"
    defaults = {"fusion": "late", "transcribe": True, "fps": 5.0, "progress": None}
    batched = False

    def load_model(self, model: str | None):
        # an unknown method fails here, before any clip is decoded
        return fusion_model(model or self.options["fusion"])

    def forward(self, paths: list) -> list[dict]:
        return [analyse_clip(path, fusion=self.model_name or self.options["fusion"],
                             transcribe=self.options["transcribe"], fps=self.options["fps"],
                             progress=self.options["progress"]) for path in paths]

    def postprocess(self, path, prepared, result: dict) -> dict:
        return result


PIPELINE = VideoPipeline
