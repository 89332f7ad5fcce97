"""Speech emotion for a clip: a speech timeline, the clip's voice emotion, and the
transcript's text emotion.

A clip is decoded (``media.audio``), Silero VAD finds the speech, and the speech is cut
into timeline segments of at most 8 s. Each segment is classified by the audio model;
the clip's label is the duration-weighted mean over segments. Optionally the speech is
transcribed with Whisper tiny.en and the transcript classified by the text model, and
both are fused late, weighted by each model's validation weighted F1.
"""
from __future__ import annotations

import math
import os
import unicodedata

import numpy as np

from ..core.errors import InputError
from ..core.results import as_vector, label_probs, make_result
from ..media.audio import SAMPLE_RATE, load_audio
from ..media.speech import MIN_SPEECH_SECONDS, loud_spans, speech_segments, speech_spans, speech_stretch
from ..models.audio import SpeakerStats
from ..models.base import Model
from ..models.fusion import late_fusion
from .base import Pipeline, classify, ignore_progress, limit_threads, pipeline_for, resolve


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


def analyse_wave(input_, wave: np.ndarray, clf: Model, transcribe: bool = True, progress=None) -> dict:
    """Timeline, clip-level speech emotion and (optionally) transcript, text emotion and
    fusion for one decoded 16 kHz wave, for the clip and for each speech segment. No
    speech, or too little, is an InputError. ``progress(stage, fraction)`` hears of each
    stage as it starts."""
    progress = progress or ignore_progress
    progress("finding speech", 0.1)
    segments, notes = wave_segments(input_, wave)
    progress(f"reading the voice in {len(segments)} speech segment(s)", 0.2)
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
        progress("transcribing", 0.5)
        _add_transcript(result, wave, segments, clf)
    progress("done", 1.0)
    return result


def words_per_segment(pieces: list[tuple[float, float, str]], segments: list[tuple[float, float]]) -> list[str]:
    """Each timeline segment's words: every transcript piece goes to the segment it
    overlaps most (a piece between segments, to the nearest one)."""
    words = [[] for _ in segments]
    for start, end, text in pieces:
        overlaps = [min(end, e) - max(start, s) for s, e in segments]
        best = int(np.argmax(overlaps))
        words[best].append(text)
    return [" ".join(w) for w in words]


def _add_transcript(result: dict, wave: np.ndarray, segments: list[tuple[float, float]], clf: Model) -> None:
    """Transcript, its text emotion, and the late fusion of audio and text (each weighted
    by its model's validation weighted F1), for each speech segment and for the clip, so
    a long recording is told segment by segment, not as one verdict. The clip's text
    emotion is the duration-weighted mean of its segments', as for the voice: a long
    transcript read whole would be cut at the text model's token limit."""
    from ..media.transcribe import transcribe_timed
    offset = segments[0][0]  # the transcript is of the speech stretch, which starts at the first segment
    pieces = [(start + offset, end + offset, text) for start, end, text in
              transcribe_timed(speech_stretch(wave, segments))]
    result["transcript"] = " ".join(piece for _, _, piece in pieces)
    per_segment = words_per_segment(pieces, segments)
    said = [(segment, words) for segment, words in zip(result["segments"], per_segment) if words]
    text_results = classify("text", [words for _, words in said]) if said else []
    weights = {"audio": clf.entry.validation_f1}
    read = []  # (segment, its text probabilities as a vector)
    for (segment, words), text_result in zip(said, text_results):
        segment["transcript"] = words
        if "error" in text_result:
            result.setdefault("notes", []).append(f"text emotion unavailable: {text_result['error']}")
            continue
        if "text" not in weights:
            text_model = resolve("text", text_result["model"])
            weights["text"] = text_model.entry.validation_f1
        segment["text"] = {"label": text_result["label"], "probs": text_result["probs"]}
        fused = late_fusion({"audio": segment["probs"], "text": text_result["probs"]}, weights)
        segment["fused"] = {"label": fused["label"], "probs": fused["probs"]}
        read.append((segment, as_vector(text_result["probs"])))
    probs = {"audio": result["probs"]}
    if read:
        clip_text = np.average([v for _, v in read], axis=0, weights=[s["end"] - s["start"] for s, _ in read])
        result["modalities"]["text"] = {**label_probs(clip_text), "model": text_model.entry.ref,
                                        **text_model.certainty(clip_text)}
        probs["text"] = result["modalities"]["text"]["probs"]
    result["fused"] = late_fusion(probs, weights)


def speaker_head(entry) -> dict:
    """The model's speaker head settings; a model without one is an InputError."""
    if "speaker_head" not in entry.config:
        raise InputError(f"{entry.ref} has no speaker head: read the clips one at a time (without --by-speaker)")
    return entry.config["speaker_head"]


def speaker_name(value) -> str:
    """A speaker cell as a group key: stripped, Unicode-normalised (NFC), and '' for a
    blank, None or NaN cell (read alone)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return unicodedata.normalize("NFC", str(value)).strip()


# what --by-speaker reads with unless told: the default voice model (an ensemble) has no
# speaker head; this member of it carries one
SPEAKER_HEAD_MODEL = "audio-wild-whisper-layers"


def classify_by_speaker(inputs, speakers, model: str | None = None, transcribe: bool = True):
    """One result per clip, yielded in input order as soon as the speakers before it are
    done, each speaker's clips read together: where a speaker has at least the model's
    ``speaker_head.min_clips`` readable distinct clips, every segment is read by the
    speaker head, standardised by that speaker's segments, times the single-clip heads.
    It needs clips across several emotions: a speaker heard in one mood is read worse
    than clip by clip (the model card measures both). Other speakers' clips, and clips
    with no speaker named, are read one at a time, with a note. Each clip is decoded twice
    (statistics first, then results); Whisper runs once per segment, twice for a speaker
    with too few clips (read again one clip at a time). A clip listed twice for a speaker
    counts once."""
    limit_threads()
    inputs, speakers = [str(x) for x in inputs], [speaker_name(s) for s in speakers]
    if len(inputs) != len(speakers):
        raise ValueError(f"{len(inputs)} inputs but {len(speakers)} speakers")
    pipe = pipeline_for("audio", model or SPEAKER_HEAD_MODEL, transcribe=transcribe)
    clf = pipe.model
    head = speaker_head(clf.entry)
    results: list[dict | None] = [None] * len(inputs)
    by_speaker: dict[str, list[int]] = {}
    for i, speaker in enumerate(speakers):
        by_speaker.setdefault(speaker, []).append(i)
    done = 0  # results[:done] have been yielded
    for speaker, clips in by_speaker.items():
        profile, distinct = SpeakerStats(), set()
        for i in clips if speaker else []:  # a clip with no speaker named is read alone
            try:
                wave = load_audio(inputs[i])
                segments, _ = wave_segments(inputs[i], wave)
                if (real := os.path.realpath(inputs[i])) not in distinct:
                    distinct.add(real)
                    profile.add_waves([wave[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in segments])
            except Exception as exc:  # noqa: BLE001 - one bad clip never ends the batch
                results[i] = {**pipe.failure(inputs[i], exc), "speaker": speaker}
        readable = [i for i in clips if results[i] is None]
        grouped = bool(speaker) and len(distinct) >= head["min_clips"]
        reader = clf.for_speaker(profile) if grouped else clf
        for i in readable:
            try:
                result = analyse_wave(inputs[i], load_audio(inputs[i]), reader, transcribe=transcribe)
            except Exception as exc:  # noqa: BLE001
                results[i] = {**pipe.failure(inputs[i], exc), **({"speaker": speaker} if speaker else {})}
                continue
            result.update(speaker_normalised=grouped, **({"speaker": speaker, "speaker_clips": len(distinct)}
                                                         if speaker else {}))
            if not speaker:
                result.setdefault("notes", []).append("no speaker given: read one clip at a time")
            elif not grouped:
                result.setdefault("notes", []).append(
                    f"speaker {ascii(speaker)}: {len(distinct)} readable distinct clip(s) in this run, fewer than "
                    f"the {head['min_clips']} the speaker head needs: read one clip at a time")
            results[i] = result
        while done < len(results) and results[done] is not None:
            yield results[done]
            done += 1


class AudioPipeline(Pipeline):
    """Audio (or video) files. ``transcribe=False`` skips Whisper decoding, text emotion
    and fusion; ``progress(stage, fraction)`` hears of each stage (the app's progress bar)."""

    modality = "audio"
    defaults = {"transcribe": True, "progress": None}
    batched = False  # each clip is its own batch of speech segments

    def preprocess(self, path) -> tuple[str, np.ndarray]:
        (self.options["progress"] or ignore_progress)("decoding", 0.0)
        return str(path), load_audio(path)

    def forward(self, clips: list[tuple[str, np.ndarray]]) -> list[dict]:
        return [analyse_wave(path, wave, self.model, transcribe=self.options["transcribe"],
                             progress=self.options["progress"]) for path, wave in clips]

    def postprocess(self, path, clip, result: dict) -> dict:
        return result


PIPELINE = AudioPipeline
