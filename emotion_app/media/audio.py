"""Audio loading: any upload format, or a video's audio track, as mono 16 kHz float32.

soundfile reads wav/flac/ogg directly; everything else (mp3, opus, webm, m4a, video
files) goes through an ``ffmpeg`` subprocess, which handles every codec a browser records.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.inputs import check_file
from .formats import AUDIO_KINDS, MAX_AUDIO_MB, VIDEO_KINDS

SAMPLE_RATE = 16000
MAX_SECONDS = 600.0
_SOUNDFILE_KINDS = ("wav", "flac", "ogg", "oga")
# soundfile decodes every channel at the native rate before the mix-down: about 10 min of
# 48 kHz stereo (230 MB as float32) at most. Larger files (many channels, high rates) go
# through ffmpeg, which mixes down and resamples as it decodes.
MAX_SOUNDFILE_SAMPLES = 60_000_000
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count when the header has no length (a FLAC written to a pipe)


def load_audio(path, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Decode ``path`` to mono 16 kHz float32; InputError names the file and the reason."""
    p = check_file(path, AUDIO_KINDS + VIDEO_KINDS, MAX_AUDIO_MB)
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
        if info.frames == UNKNOWN_FRAMES:
            return None  # ffmpeg finds the length by decoding, and stops past the limit
        if info.frames and info.duration > max_seconds:
            raise InputError(f"{path}: audio is {info.duration:.0f} s long, over the {max_seconds / 60:g} min limit")
        if info.frames * info.channels > MAX_SOUNDFILE_SAMPLES:
            return None  # too much to decode at once: ffmpeg keeps the memory bounded
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
        raise InputError(f"{path}: cannot decode audio ({_ffmpeg_reason(proc.stderr)})")
    wave = np.frombuffer(proc.stdout, dtype=np.float32)
    if wave.size > max_seconds * SAMPLE_RATE:
        raise InputError(f"{path}: audio is longer than the {max_seconds / 60:g} min limit")
    return wave


def _ffmpeg_reason(stderr: bytes) -> str:
    """What a user can act on: ffmpeg's own last line on a damaged header is often an
    internal error ("Cannot allocate memory", "Invalid argument") that misleads."""
    text = stderr.decode(errors="replace")
    if "does not contain any stream" in text or "matches no streams" in text:
        return "no audio track"
    return "damaged or not audio"


def resample(wave: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """From ``rate`` to ``target`` (16 kHz) with torchaudio's band-limited resampler."""
    if rate == target:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import torch
    import torchaudio.functional as AF
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, target).numpy()
