"""Where the speech is: Silero VAD (the model ships inside the ``silero-vad`` package, so
it loads offline), a loudness fallback, and timeline segments. Silence is never
classified as an emotion."""
from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE

MIN_SPEECH_SECONDS = 0.3
MAX_SEGMENT_SECONDS = 8.0  # longer speech is split into timeline segments of at most this


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


def speech_pieces(wave: np.ndarray, segments: list[dict]) -> list[np.ndarray]:
    """The waves of a voice result's speech segments (``start``/``end`` in seconds)."""
    return [wave[int(s["start"] * SAMPLE_RATE):int(s["end"] * SAMPLE_RATE)] for s in segments]


def speech_stretch(wave: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """The wave from the start of the first span to the end of the last: the speech with
    its inner pauses, as the transcript, training and fine-tuning read it."""
    return wave[int(spans[0][0] * SAMPLE_RATE):int(spans[-1][1] * SAMPLE_RATE)]
