"""Video decoding with ffmpeg: stream facts (ffprobe), sampled RGB frames, the audio track.

Frames are decoded at a chosen rate, scaled so the shorter side is at most FRAME_SIDE,
and streamed to Python one at a time; ffmpeg applies the rotation a phone stores in
the file, so faces arrive upright. Nothing decodes a whole clip into memory.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.inputs import check_file
from .audio import SAMPLE_RATE, load_audio
from .formats import MAX_VIDEO_MB, VIDEO_KINDS

MAX_SECONDS = 600.0  # longer clips are refused before anything is decoded
MAX_FRAMES = 600  # clips longer than MAX_FRAMES / fps are sampled more sparsely
MAX_FPS = 30.0
FRAME_SIDE = 360  # shorter side of the frames the face detector sees
# longer side at most: a 16:9 frame is 640 wide; a 1600:1 pixel aspect would otherwise be
# decoded 81,600 pixels wide (78 MB a frame)
MAX_FRAME_LONG_SIDE = 4 * FRAME_SIDE


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
    p = check_file(path, VIDEO_KINDS, MAX_VIDEO_MB)
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
    """Width and height (even numbers) with the shorter side at most FRAME_SIDE and the
    longer at most MAX_FRAME_LONG_SIDE."""
    scale = min(1.0, FRAME_SIDE / min(info.width, info.height), MAX_FRAME_LONG_SIDE / max(info.width, info.height))
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
    cmd = _rgb_frames_command(path, width, height, f"fps={fps:.6f},")
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
    elif count == 0:  # shorter than one sampling interval: the fps filter kept none of it
        first = _first_frame(path, width, height)
        if first is None:
            raise InputError(f"{path}: video has no frames")
        yield 0.0, first


def _rgb_frames_command(path, width: int, height: int, sampling: str, options: tuple[str, ...] = ()) -> list[str]:
    """ffmpeg decoding the first video stream to raw RGB frames of width x height;
    ``sampling`` is a filter (ending in a comma) or options that pick the frames."""
    return ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", *options,
            "-vf", f"{sampling}scale={width}:{height},setsar=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def _first_frame(path, width: int, height: int) -> np.ndarray | None:
    """The clip's first frame (None if it has none), so a one-frame clip is still analysed."""
    proc = subprocess.run(_rgb_frames_command(path, width, height, "", ("-frames:v", "1")), capture_output=True,
                          timeout=120)
    frame_bytes = width * height * 3
    if len(proc.stdout) < frame_bytes:
        return None
    return np.frombuffer(proc.stdout[:frame_bytes], np.uint8).reshape(height, width, 3)


def extract_audio(path) -> np.ndarray:
    """The audio track as 16 kHz mono (through a temporary WAV read by ``load_audio``,
    which applies the speech pipeline's length limit)."""
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
