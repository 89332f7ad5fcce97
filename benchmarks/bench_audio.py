"""Speech emotion speed on this CPU: ``python benchmarks/bench_audio.py [--repeats 5]``.

Makes a 5 s and a 10 s clip of espeak-ng speech (in a temporary folder), warms every
model up once, then reports medians of ``--repeats`` runs: the 5 s clip end to end
without transcription (decode + VAD + the voice model; target <= 300 ms), its stages
(VAD, the voice model or each of its ensemble members), the transcription of the 10 s
clip (target <= 1.5 s), and the 10 s clip end to end with transcript, text emotion and
fusion. Both wall and process CPU time are given, with the load average: on a shared
machine wall time also measures the neighbours.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from emotion_app.media.audio import SAMPLE_RATE, load_audio  # noqa: E402
from emotion_app.media.speech import speech_spans  # noqa: E402
from emotion_app.media.transcribe import transcribe  # noqa: E402
from emotion_app.pipelines import classify, resolve  # noqa: E402

TEXT = ("I told you three times already, and you still did not listen to a single word. "
        "Why does this keep happening every week, every single time?")


def speech_clip(folder: Path, seconds: float) -> Path:
    """espeak-ng speech, repeated and cut to ``seconds``."""
    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), TEXT], check=True)
    wave = load_audio(raw)
    wave = np.tile(wave, int(np.ceil(seconds * SAMPLE_RATE / len(wave))))[:int(seconds * SAMPLE_RATE)]
    path = folder / f"speech_{seconds:g}s.wav"
    sf.write(path, wave, SAMPLE_RATE)
    return path


def timed(fn, repeats: int) -> dict:
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return {"wall_ms": round(statistics.median(wall), 1), "cpu_ms": round(statistics.median(cpu), 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        five, ten = speech_clip(Path(tmp), 5), speech_clip(Path(tmp), 10)
        start = time.perf_counter()
        classify("audio", [str(ten)])  # loads VAD, Whisper, both members and the text model
        report = {"load_and_first_call_ms": round((time.perf_counter() - start) * 1000, 1)}
        wave5, wave10 = load_audio(five), load_audio(ten)
        model = resolve("audio")
        report["5s_end_to_end_no_transcript"] = timed(lambda: classify("audio", [str(five)], transcribe=False), args.repeats)
        report["5s_vad"] = timed(lambda: speech_spans(wave5), args.repeats)
        for member, _ in getattr(model, "members", [(model, 1.0)]):  # an ensemble's members, or the model
            report[f"5s_{member.entry.id}"] = timed(lambda m=member: m.predict_proba([wave5]), args.repeats)
        report["10s_transcription"] = timed(lambda: transcribe(wave10), args.repeats)
        report["10s_end_to_end_with_transcript"] = timed(lambda: classify("audio", [str(ten)]), args.repeats)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
