"""Audio loading (any upload format, or a video's audio track) and speech detection.

Everything downstream works on one representation: mono 16 kHz float32. soundfile
reads wav/flac/ogg directly; everything else (mp3, opus, webm, m4a, video files) goes
through an ``ffmpeg`` subprocess, which handles every codec a browser records.
Silero VAD (the model ships inside the ``silero-vad`` package, so it loads offline)
decides where the speech is, so silence is never classified as an emotion.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from .inputs import InputError, check_file

SAMPLE_RATE = 16000
MAX_SECONDS = 600.0
MAX_MB = 200.0
MIN_SPEECH_SECONDS = 0.3
MAX_SEGMENT_SECONDS = 8.0  # longer speech is split into timeline segments of at most this
AUDIO_KINDS = ("wav", "flac", "ogg", "oga", "opus", "mp3", "webm", "m4a", "aac", "weba")
VIDEO_KINDS = ("mp4", "mov", "mkv", "avi", "m4v", "mpg", "mpeg")
_SOUNDFILE_KINDS = ("wav", "flac", "ogg", "oga")


def load_audio(path, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Decode ``path`` to mono 16 kHz float32; InputError names the file and the reason."""
    p = check_file(path, AUDIO_KINDS + VIDEO_KINDS, MAX_MB)
    wave = None
    if p.suffix.lower().lstrip(".") in _SOUNDFILE_KINDS:
        wave = _read_soundfile(p, max_seconds)
    if wave is None:  # not a soundfile format, or a codec libsndfile lacks (e.g. opus in ogg)
        wave = _read_ffmpeg(p, max_seconds)
    if wave.size == 0:
        raise InputError(f"{path}: contains no audio samples")
    return np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


def _read_soundfile(path: Path, max_seconds: float) -> np.ndarray | None:
    import soundfile as sf
    try:
        info = sf.info(str(path))
        if info.frames and info.duration > max_seconds:
            raise InputError(f"{path}: audio is {info.duration:.0f} s long, over the {max_seconds / 60:g} min limit")
        if np.gcd(info.samplerate, SAMPLE_RATE) < 20:
            return None  # an odd rate makes a huge polyphase kernel: ffmpeg resamples it faster
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except InputError:
        raise
    except Exception:
        return None  # let ffmpeg try, and report its reason if it fails too
    return resample(data.mean(axis=1), rate)


def _read_ffmpeg(path: Path, max_seconds: float) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise InputError(f"{path}: reading .{path.suffix.lstrip('.')} files needs ffmpeg, which is not installed")
    # Decode a little past the limit: enough to know the file is too long, never the whole of a huge file.
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-t", str(max_seconds + 1), "-vn",
           "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise InputError(f"{path}: decoding took over 5 minutes; the file is damaged or far too long") from None
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = reason[-1].replace(f"{path}: ", "") if reason else f"ffmpeg exit status {proc.returncode}"
        if "does not contain any stream" in reason or "matches no streams" in reason:
            reason = "no audio track"
        raise InputError(f"{path}: cannot decode audio ({reason})")
    wave = np.frombuffer(proc.stdout, dtype=np.float32)
    if wave.size > max_seconds * SAMPLE_RATE:
        raise InputError(f"{path}: audio is longer than the {max_seconds / 60:g} min limit")
    return wave


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """To 16 kHz with torchaudio's band-limited resampler."""
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import torch
    import torchaudio.functional as AF
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, SAMPLE_RATE).numpy()


@lru_cache(maxsize=1)
def _vad():
    import torch
    threads = torch.get_num_threads()
    from silero_vad import get_speech_timestamps, load_silero_vad
    torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread for everyone
    return load_silero_vad(onnx=True), get_speech_timestamps, threading.Lock()


def speech_spans(wave: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch of speech Silero VAD finds."""
    import torch
    model, get_speech_timestamps, lock = _vad()
    with lock:  # the ONNX wrapper keeps recurrent state between calls
        stamps = get_speech_timestamps(torch.from_numpy(wave), model, sampling_rate=SAMPLE_RATE,
                                       min_speech_duration_ms=150, min_silence_duration_ms=300,
                                       speech_pad_ms=100)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def loud_spans(wave: np.ndarray, frame: int = 512, above_floor_db: float = 20.0,
               min_level_db: float = -40.0) -> list[tuple[float, float]]:
    """(start, end) seconds of stretches well above the clip's own quiet floor and not
    faint: the fallback when VAD finds nothing, because Silero misses some shouted or
    screamed speech (13 of RAVDESS' 1080 clips, all angry, fearful or happy). Silence,
    hum and steady noise have no such stretches."""
    n = len(wave) // frame
    if n == 0:
        return []
    rms = np.sqrt(np.mean(wave[:n * frame].reshape(n, frame) ** 2, axis=1))
    level = 20 * np.log10(rms + 1e-10)
    loud = (level > np.percentile(level, 10) + above_floor_db) & (level > min_level_db)
    spans, start = [], None
    for i, on in enumerate(np.append(loud, False)):
        if on and start is None:
            start = i
        elif not on and start is not None:
            spans.append([start * frame / SAMPLE_RATE, i * frame / SAMPLE_RATE])
            start = None
    merged: list[list[float]] = []
    for span in spans:
        if merged and span[0] - merged[-1][1] <= 0.3:
            merged[-1][1] = span[1]
        else:
            merged.append(span)
    duration = len(wave) / SAMPLE_RATE
    return [(max(0.0, s - 0.1), min(duration, e + 0.1)) for s, e in merged if e - s >= 0.15]


def speech_segments(spans: list[tuple[float, float]], max_seconds: float = MAX_SEGMENT_SECONDS,
                    max_gap: float = 1.0) -> list[tuple[float, float]]:
    """Group VAD spans into timeline segments: neighbours closer than ``max_gap`` join
    while the segment stays within ``max_seconds``; a longer span is cut into equal parts.
    Fragments under MIN_SPEECH_SECONDS are dropped (too short to carry an emotion)."""
    pieces = []
    for start, end in spans:
        parts = int(np.ceil((end - start) / max_seconds))
        step = (end - start) / parts
        pieces += [(start + i * step, start + (i + 1) * step) for i in range(parts)]
    segments: list[list[float]] = []
    for start, end in pieces:
        if segments and start - segments[-1][1] <= max_gap and end - segments[-1][0] <= max_seconds:
            segments[-1][1] = end
        else:
            segments.append([start, end])
    return [(s, e) for s, e in segments if e - s >= MIN_SPEECH_SECONDS]
