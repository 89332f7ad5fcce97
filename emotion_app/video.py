"""Video emotion: the main speaker's face in sampled frames, the soundtrack's voice and
words, and their fusion, for the whole clip and second by second.

ffmpeg decodes the frames at ``fps`` (5 by default, as MFER), scaled so the shorter
side is at most 360 px, and streams them to Python one at a time; it applies the
rotation a phone stores in the file, so faces arrive upright. Meanwhile a second
thread extracts the audio track (16 kHz mono) and runs the speech pipeline on it
(voice emotion, transcript, the transcript's text emotion). MTCNN runs every 0.6 s;
faces are linked from detection to detection by box overlap, and in the frames between
two detections a face's landmarks are interpolated and it is cropped there, so every
sampled frame gets its own expression at a third of the detector's cost. The main
speaker is the track that fills most of the picture for longest. The clip's face
emotion is the mean of its frames' probabilities weighted by detection confidence
times the classifier's top probability (confidence-weighted pooling), so blurred or
half-turned frames count less.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fusion import (AUDIO, IMAGE, TEXT, as_vector, fuse, fusion_model, modality_features, needs_features,
                     speech_pieces)
from .inputs import InputError, check_file
from .pipeline import error_result, label_probs, make_result, resolve
from .registry import ModelNotFound

VIDEO_KINDS = ("mp4", "m4v", "mov", "avi", "mkv", "webm", "flv")
MAX_MB = 500.0
MAX_SECONDS = 600.0  # longer clips are refused before anything is decoded
MAX_FRAMES = 600  # clips longer than MAX_FRAMES / fps are sampled more sparsely
MAX_FPS = 30.0
FRAME_SIDE = 360  # shorter side of the frames the face detector sees
MIN_FACE_CONFIDENCE = 0.9
DETECT_EVERY_SECONDS = 0.6  # MTCNN runs this often; frames between get interpolated landmarks
TRACK_IOU = 0.3  # a face continues a track when its box overlaps the track's last box this much
TRACK_GAP_SECONDS = 1.0  # a track survives this long without a face (a turn of the head, a blink of the detector)
GALLERY_SIZE = 8
# Result keys for the three modalities, and the registry modality behind each.
MODALITY_KEYS = {"face": IMAGE, "voice": AUDIO, "text": TEXT}


@dataclass(frozen=True)
class ClipInfo:
    duration: float | None  # None when the container does not say (e.g. browser-recorded webm)
    width: int  # as displayed: rotation and pixel aspect ratio applied
    height: int
    has_audio: bool
    rotation: int  # degrees clockwise, as displayed


def _ffmpeg_reason(stderr: str, fallback: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else fallback


def probe(path) -> ClipInfo:
    """Read a clip's streams with ffprobe; InputError for anything that is not a playable video."""
    p = check_file(path, VIDEO_KINDS, MAX_MB)
    if shutil.which("ffprobe") is None:
        raise InputError(f"{path}: reading video needs ffmpeg (ffprobe), which is not installed")
    proc = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                           str(p)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise InputError(f"{path}: cannot read video ({_ffmpeg_reason(proc.stderr, 'ffprobe failed')})")
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")]
    if not video or not video[0].get("width"):
        raise InputError(f"{path}: no video stream (for a sound file use the audio modality)")
    v = video[0]
    duration = _float(data.get("format", {}).get("duration")) or _float(v.get("duration"))
    if duration is not None and duration > MAX_SECONDS:
        raise InputError(f"{path}: video is {duration / 60:.1f} min long, over the {MAX_SECONDS / 60:.0f} min "
                         "limit; trim it to the part you want analysed")
    rotation = _rotation(v)
    width, height = int(v["width"]), int(v["height"])
    num, _, den = str(v.get("sample_aspect_ratio", "1:1")).partition(":")
    if num.isdigit() and den.isdigit() and int(num) > 0 and int(den) > 0:
        width = round(width * int(num) / int(den))
    if rotation % 180:
        width, height = height, width
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    return ClipInfo(duration, width, height, has_audio, rotation)


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _rotation(stream: dict) -> int:
    """Degrees clockwise a player turns the picture, from the display matrix (which
    counts counter-clockwise) or the older ``rotate`` tag; a phone held upright gives 90."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return round(-float(side["rotation"])) % 360
    return int(stream.get("tags", {}).get("rotate", 0) or 0) % 360


def frame_size(info: ClipInfo) -> tuple[int, int]:
    """Width and height (even numbers) with the shorter side at most FRAME_SIDE."""
    scale = min(1.0, FRAME_SIDE / min(info.width, info.height))
    return max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2)


def sampling_rate(info: ClipInfo, fps: float) -> tuple[float, list[str]]:
    """The frame rate to sample at, lowered for long clips so at most MAX_FRAMES are analysed."""
    if not 0 < fps <= MAX_FPS:
        raise InputError(f"fps must be between 0 and {MAX_FPS:.0f}, got {fps}")
    if info.duration and info.duration * fps > MAX_FRAMES:
        lowered = MAX_FRAMES / info.duration
        note = (f"clip is {info.duration:.0f} s long: faces sampled at {lowered:.2f} frames per second "
                f"instead of {fps:g}, to keep to {MAX_FRAMES} frames")
        return lowered, [note]
    return fps, []


def sample_frames(path, info: ClipInfo, fps: float, notes: list[str]):
    """Yield (seconds, RGB frame) at ``fps``, decoded by ffmpeg as they are needed. A
    decoding error after some frames becomes a note; before any frame, an InputError."""
    width, height = frame_size(info)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
           "-vf", f"fps={fps:.6f},scale={width}:{height},setsar=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = width * height * 3
    limit = int(MAX_SECONDS * fps) + 1
    count = 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        try:
            while True:
                buffer = proc.stdout.read(frame_bytes)
                if len(buffer) < frame_bytes:
                    break
                if count >= limit:  # only when the container gave no duration to check up front
                    raise InputError(f"{path}: video is longer than the {MAX_SECONDS / 60:.0f} min limit")
                yield count / fps, np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
                count += 1
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        reason = _ffmpeg_reason(stderr, f"ffmpeg exit status {proc.returncode}")
        if count == 0:
            raise InputError(f"{path}: cannot decode video ({reason})")
        notes.append(f"decoding stopped early after {count / fps:.1f} s ({reason})")
    elif count == 0:
        raise InputError(f"{path}: video has no frames")


# --- the main speaker's face ------------------------------------------------------------

def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracks:
    """Faces linked from detection to detection by box overlap.

    Each new face, largest first, joins the track whose last box overlaps it most (a
    track may skip up to ``max_gap`` frames); the main speaker is the track with the
    largest sum of face area times detection confidence: on screen longest and closest.
    """

    def __init__(self, max_gap: int):
        self.max_gap, self.tracks = max_gap, []

    def add(self, i: int, faces: list) -> list[tuple[dict, object]]:
        """Link frame ``i``'s faces; returns (track, its previous face) for each face."""
        linked, taken = [], set()
        for face in sorted(faces, key=lambda f: -f.area):
            candidates = [(box_iou(t["last"][1].box, face.box), k) for k, t in enumerate(self.tracks)
                          if k not in taken and i - t["last"][0] <= self.max_gap + 1]
            overlap, k = max(candidates, default=(0.0, None))
            if k is None or overlap < TRACK_IOU:
                self.tracks.append({"faces": {}, "score": 0.0, "last": None})
                k = len(self.tracks) - 1
            track = self.tracks[k]
            linked.append((track, track["last"]))
            track["faces"][i], track["last"] = face, (i, face)
            track["score"] += face.area * face.confidence
            taken.add(k)
        return linked

    def main(self, frames: int) -> list:
        """Per frame, the main speaker's face or None."""
        if not self.tracks:
            return [None] * frames
        best = max(self.tracks, key=lambda t: t["score"])
        return [best["faces"].get(i) for i in range(frames)]


def between(a, b, w: float, frame: np.ndarray):
    """The face in a frame between two detections of it, landmarks and box interpolated
    (``w`` from 0 at ``a`` to 1 at ``b``), cropped from that frame."""
    from .faces import Face, fer_crop
    landmarks = (1 - w) * a.landmarks + w * b.landmarks
    box = tuple(float(v) for v in (1 - w) * np.asarray(a.box) + w * np.asarray(b.box))
    return Face(box, landmarks, min(a.confidence, b.confidence), fer_crop(frame, landmarks))


def pooled(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.average(probs, axis=0, weights=weights)


def frame_weights(probs: np.ndarray, confidences: np.ndarray) -> np.ndarray:
    """Confidence-weighted pooling: detection confidence times the classifier's top probability."""
    return np.asarray(confidences, dtype=float) * probs.max(axis=1)


# --- one clip -----------------------------------------------------------------------------

def _summary(probs: np.ndarray, model_ref: str, **extra) -> dict:
    result = make_result(None, probs, model_ref, **extra)
    del result["input"]
    return result


def track_faces(path, info: ClipInfo, fps: float, notes: list[str]):
    """Sampled frame times and the main speaker's face in each (or None).

    MTCNN runs on every ``DETECT_EVERY_SECONDS`` only (it costs far more than decoding or
    classifying); in the frames between two detections of the same face its landmarks
    are interpolated and the face is cropped there, so every sampled frame still gets
    its own expression."""
    from .faces import detect_faces
    every = max(1, round(fps * DETECT_EVERY_SECONDS))
    tracks = FaceTracks(max_gap=max(every, round(TRACK_GAP_SECONDS * fps)))
    times, pending = [], []  # pending: (index, frame) since the last detection

    def detect(i, frame):
        for track, previous in tracks.add(i, detect_faces(frame, min_confidence=MIN_FACE_CONFIDENCE)):
            if previous is not None and previous[0] == i - len(pending) - 1:
                for j, between_frame in pending:
                    w = (j - previous[0]) / (i - previous[0])
                    track["faces"][j] = between(previous[1], track["faces"][i], w, between_frame)
        pending.clear()

    for i, (t, frame) in enumerate(sample_frames(path, info, fps, notes)):
        times.append(t)
        if i % every:
            pending.append((i, frame))
        else:
            detect(i, frame)
    if pending:  # the clip ended between detections: detect on its last frame
        detect(*pending.pop())
    return np.array(times), tracks.main(len(times))


def extract_audio(path) -> np.ndarray:
    """The audio track as 16 kHz mono (through a temporary WAV read by ``load_audio``,
    which applies the speech pipeline's length limit)."""
    from .audio_io import SAMPLE_RATE, load_audio
    with tempfile.TemporaryDirectory(prefix="video-") as tmp:
        wav = Path(tmp) / "audio.wav"
        proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn",
                               "-t", str(MAX_SECONDS + 1), "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_f32le",
                               str(wav)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not wav.exists():
            raise InputError(f"{path}: cannot decode audio ({_ffmpeg_reason(proc.stderr, 'ffmpeg failed')})")
        try:
            return load_audio(wav)
        except InputError as exc:
            raise InputError(str(exc).replace(str(wav), str(path))) from exc


def _voice(path, info: ClipInfo, transcribe: bool, notes: list[str]):
    """The speech pipeline's result for the soundtrack and its speech pieces (one wave
    per timeline segment), or (None, []) with a note saying why."""
    from .audio import analyse_wave
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
                 weights: dict | None = None) -> dict:
    """The full result for one clip (see ``predict``); InputError if nothing is usable.
    The soundtrack is analysed in a second thread while the frames are."""
    info = probe(path)
    fps, notes = sampling_rate(info, fps)
    voice_notes: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        voice_job = pool.submit(_voice, path, info, transcribe, voice_notes)
        try:
            face_model = resolve(IMAGE)
            times, track = track_faces(path, info, fps, notes)
        except ModelNotFound as exc:
            face_model, times, track = None, np.zeros(0), []
            notes.append(f"face not available: {exc}")
        voice, pieces = voice_job.result()
    notes += voice_notes
    duration = info.duration or (len(times) / fps)
    faced = [i for i, face in enumerate(track) if face is not None]
    crops = [track[i].crop for i in faced]
    modalities, frame_probs, face_weights = {}, None, None
    if crops:
        frame_probs = face_model.predict_proba(crops)
        face_weights = frame_weights(frame_probs, [track[i].confidence for i in faced])
        modalities["face"] = _summary(pooled(frame_probs, face_weights), face_model.entry.ref,
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
    """One entry per second: the face (frames in that second), the voice (speech
    segments overlapping it, by overlap) and their fusion with the clip's text emotion."""
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
        entry = {"second": s, "face": label_probs(probs[IMAGE])["probs"] if IMAGE in probs else None,
                 "voice": label_probs(probs[AUDIO])["probs"] if AUDIO in probs else None, "fused": None}
        if probs:
            if text is not None:
                probs[TEXT] = as_vector(text["probs"])
                if TEXT in features:
                    feats[TEXT] = features[TEXT]["clip"]
            entry["fused"] = fuse(fusion, probs, feats, weights=weights)["probs"]
        out.append(entry)
    return out


def predict(paths: list, model: str | None = None, fusion: str = "late", transcribe: bool = True,
            fps: float = 5.0, **_) -> list[dict]:
    """Classify video files: the fused label and probabilities at the top level, each
    modality's under ``modalities`` (face, voice, text; a missing one is absent and a
    note says why), a per-second ``timeline`` and the sampled ``frames``. ``fusion`` is a
    method (late, concat, gated, mrpn, embracenet) or a fusion model's registry id;
    ``model`` (a fusion model id) overrides it. A clip that fails becomes an error result
    and the rest go on."""
    fusion_model(model or fusion)  # an unknown method fails here, before any clip is decoded
    results = []
    for path in paths:
        try:
            results.append(analyse_clip(path, fusion=model or fusion, transcribe=transcribe, fps=fps))
        except InputError as exc:
            results.append(error_result(str(path), exc))
    return results


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
