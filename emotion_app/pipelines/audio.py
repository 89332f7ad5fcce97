"""Speech emotion for a clip: a speech timeline, the clip's voice emotion, and the
transcript's text emotion.

A clip is decoded (``media.audio``), Silero VAD finds the speech, and the speech is cut
into timeline segments of at most 8 s. Each segment is classified by the audio model;
the clip's label is the duration-weighted mean over segments. Optionally the speech is
transcribed with Whisper tiny.en and the transcript classified by the text model, and
both are fused late, weighted by each model's validation weighted F1.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.results import label_probs, make_result
from ..media.audio import SAMPLE_RATE, load_audio
from ..media.speech import MIN_SPEECH_SECONDS, loud_spans, speech_segments, speech_spans, speech_stretch
from ..models.base import Model
from ..models.fusion import late_fusion
from .base import Pipeline, classify, resolve


def _summary(result: dict) -> dict:
    return {k: result[k] for k in ("label", "probs", "model", "uncertain") if k in result}


def wave_segments(input_, wave: np.ndarray) -> tuple[list[tuple[float, float]], list[str]]:
    """The timeline's speech segments (start, end in seconds) of a decoded 16 kHz wave,
    and notes; no speech, or too little, is an InputError. Fine-tuning reads the same."""
    if len(wave) < MIN_SPEECH_SECONDS * SAMPLE_RATE:
        raise InputError(f"{input_}: clip is only {len(wave) / SAMPLE_RATE:.2f} s long; at least "
                         f"{MIN_SPEECH_SECONDS} s of speech is needed to judge an emotion")
    notes = []
    spans = speech_spans(wave)
    if not spans:
        spans = loud_spans(wave)
        if not spans:
            raise InputError(f"{input_}: no speech detected (silence or background noise only)")
        notes.append("the voice detector found no speech, so the loud stretches were classified: "
                     "shouting or screaming can fool it, but check this is a voice")
    segments = speech_segments(spans)
    if not segments:
        total = sum(e - s for s, e in spans)
        raise InputError(f"{input_}: only {total:.2f} s of speech detected; at least {MIN_SPEECH_SECONDS} s "
                         "is needed to judge an emotion")
    return segments, notes


def analyse_wave(input_, wave: np.ndarray, clf: Model, transcribe: bool = True) -> dict:
    """Timeline, clip-level speech emotion and (optionally) transcript, text emotion and
    fusion for one decoded 16 kHz wave. No speech, or too little, is an InputError."""
    segments, notes = wave_segments(input_, wave)
    pieces = [wave[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in segments]
    seg_probs = clf.calibrated_proba(pieces)
    clip = np.average(seg_probs, axis=0, weights=[e - s for s, e in segments])
    result = make_result(input_, clip, clf.entry.ref, **clf.certainty(clip), duration=round(len(wave) / SAMPLE_RATE, 2))
    result["segments"] = [{"start": round(s, 2), "end": round(e, 2), **label_probs(p)}
                          for (s, e), p in zip(segments, seg_probs)]
    result["modalities"] = {"audio": _summary(result)}
    if notes:
        result["notes"] = notes
    if transcribe:
        _add_transcript(result, speech_stretch(wave, segments), clf)
    return result


def _add_transcript(result: dict, speech: np.ndarray, clf: Model) -> None:
    """Transcript, its text emotion, and the late fusion of audio and text, each weighted
    by its model's validation weighted F1."""
    from ..media.transcribe import transcribe
    text = transcribe(speech)
    result["transcript"] = text
    probs = {"audio": result["probs"]}
    weights = {"audio": clf.entry.validation_f1}
    if text:
        text_result = classify("text", [text])[0]
        if "error" in text_result:
            result.setdefault("notes", []).append(f"text emotion unavailable: {text_result['error']}")
        else:
            result["modalities"]["text"] = _summary(text_result)
            probs["text"] = text_result["probs"]
            weights["text"] = resolve("text", text_result["model"]).entry.validation_f1
    result["fused"] = late_fusion(probs, weights)


class AudioPipeline(Pipeline):
    """Audio (or video) files. ``transcribe=False`` skips Whisper decoding, text emotion
    and fusion."""

    modality = "audio"
    defaults = {"transcribe": True}
    batched = False  # each clip is its own batch of speech segments

    def preprocess(self, path) -> tuple[str, np.ndarray]:
        return str(path), load_audio(path)

    def forward(self, clips: list[tuple[str, np.ndarray]]) -> list[dict]:
        return [analyse_wave(path, wave, self.model, transcribe=self.options["transcribe"]) for path, wave in clips]

    def postprocess(self, path, clip, result: dict) -> dict:
        return result


PIPELINE = AudioPipeline
