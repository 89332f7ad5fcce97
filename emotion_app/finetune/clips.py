"""Labelled video clips for fine-tuning: kept with the job, and read as the video pipeline
reads them (the main face tracked through frames sampled at its rate, the audio track's
speech segments), so training sees what prediction sees. A clip without a face, sound or
speech gives what it has; one with neither face nor speech gives nothing and says why.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..media.faces import CROP_SIZE

CLIP_FPS = 5.0  # the video pipeline's default sampling rate (as MFER)
CLIPS_FILE = "clips.json"


@dataclass
class ClipParts:
    """What one clip gives each modality."""
    crops: np.ndarray  # (frames with the main face, 96, 96, 3) uint8, as the video pipeline crops them
    confidences: np.ndarray  # detection confidence of each crop
    pieces: list[np.ndarray] = field(default_factory=list)  # 16 kHz speech segments of the audio track
    transcript: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not len(self.crops) and not self.pieces


def read_clip(path, transcribe: bool = False) -> ClipParts:
    """The main face in each sampled frame, the speech segments and (optionally) their transcript."""
    from ..media.speech import speech_pieces, speech_stretch
    from ..media.tracking import track_faces
    from ..media.video import extract_audio, probe, sampling_rate
    from ..pipelines.audio import wave_segments
    info = probe(path)
    fps, notes = sampling_rate(info, CLIP_FPS)
    _, track = track_faces(path, info, fps, notes)
    faces = [face for face in track if face is not None]
    parts = ClipParts(np.stack([f.crop for f in faces]) if faces else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
                      np.array([f.confidence for f in faces], dtype=np.float32), notes=notes)
    if not faces:
        notes.append(f"no face in any of the {len(track)} sampled frames")
    if not info.has_audio:
        notes.append("no audio track")
        return parts
    try:
        wave = extract_audio(path)
        segments, _ = wave_segments(path, wave)
    except InputError as exc:
        notes.append(f"no voice: {str(exc).removeprefix(f'{path}: ')}")
        return parts
    parts.pieces = speech_pieces(wave, [{"start": s, "end": e} for s, e in segments])
    if transcribe:
        from ..media.transcribe import transcribe as transcript_of
        parts.transcript = transcript_of(speech_stretch(wave, segments)) or None
    return parts


def save_clips(folder: Path, paths: list[str], labels: list[int], speakers: list[str | None]) -> None:
    """Copy the usable clips into the job's folder (the upload's files are temporary) with
    a list of their labels and speakers."""
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    listing = []
    for i, (path, label, speaker) in enumerate(zip(paths, labels, speakers)):
        stored = f"clips/{i:05d}{Path(path).suffix.lower()}"
        shutil.copyfile(path, folder / stored)
        listing.append({"file": stored, "name": Path(path).name, "label": int(label), "speaker": speaker})
    (folder / CLIPS_FILE).write_text(json.dumps(listing, indent=1))


def load_clips(folder: Path) -> list[dict]:
    """The stored clips: ``path`` (in the job's folder), ``name``, ``label``, ``speaker``."""
    listing = json.loads((folder / CLIPS_FILE).read_text())
    return [{**c, "path": str(folder / c["file"])} for c in listing]
