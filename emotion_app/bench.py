"""Speed benchmarks on this machine: ``python -m emotion_app bench``.

Timings use the bundled examples and the public pipeline functions, after one warm-up
call (model loading is reported separately), as the median of ``repeats`` runs.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .core.errors import ModelNotFound
from .core.paths import ROOT
from .pipelines import classify, resolve

EXAMPLES = ROOT / "examples"


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def _load_ms(modality: str) -> float:
    start = time.perf_counter()
    resolve(modality)
    return round((time.perf_counter() - start) * 1000, 1)


def bench_text(repeats: int) -> dict:
    texts = (EXAMPLES / "texts.txt").read_text().splitlines()
    load = _load_ms("text")
    classify("text", texts[:1])
    batch = (texts * 334)[:1000]
    start = time.perf_counter()
    classify("text", batch)
    batch_ms = (time.perf_counter() - start) * 1000
    return {"model": resolve("text").entry.ref, "load_ms": load,
            "single_sentence_ms": _median_ms(lambda: classify("text", texts[:1]), repeats),
            "batched_ms_per_sentence_1000": round(batch_ms / len(batch), 3)}


def bench_image(repeats: int) -> dict:
    from PIL import Image

    from .pipelines.image import classify_crops
    load = _load_ms("image")
    photo = str(EXAMPLES / "astronaut.jpg")
    classify("image", [photo])
    crop = np.asarray(Image.open(photo).convert("L").crop((150, 60, 290, 200)).resize((48, 48)))
    crops = [crop] * 256
    start = time.perf_counter()
    classify_crops(crops)
    batch_ms = (time.perf_counter() - start) * 1000
    model = resolve("image")
    return {"model": model.entry.ref, "load_ms": load,
            "single_crop_ms": _median_ms(lambda: classify_crops([crop]), repeats),
            "batched_ms_per_crop_256": round(batch_ms / len(crops), 3),
            **_cascade_paths(model, crop, repeats),
            "photo_with_detection_ms": _median_ms(lambda: classify("image", [photo]), max(3, repeats // 4))}


def _cascade_paths(model, crop, repeats: int) -> dict:
    """A cascade ensemble's cost depends on the face: the example face may take either
    path, so both are timed (the sure path: the first member alone; the unsure one: every
    member) and weighed by the share of RAF-DB's held-out faces its card says are sure."""
    from .models.ensemble import Ensemble
    cascade = getattr(model, "cascade", None)
    if not cascade:
        return {}
    first = model.members[cascade["first_member"]][0]
    everything = Ensemble(model.members)
    share = model.entry.metrics["training"]["cascade"]["answered_alone"]["raf_val"]
    out = {"answered_alone_share_raf_val": round(share, 3)}
    for name, crops, n in (("single_crop", [crop], repeats), ("batched_per_crop_256", [crop] * 256, 2)):
        sure = _median_ms(lambda: first.predict_proba(crops), n) / len(crops)
        unsure = _median_ms(lambda: everything.predict_proba(crops), n) / len(crops)
        out[f"{name}_ms_sure_unsure_expected"] = [round(sure, 3), round(unsure, 3),
                                                  round(share * sure + (1 - share) * unsure, 3)]
    return out


def bench_audio(repeats: int) -> dict:
    import soundfile as sf

    from .media.audio import load_audio
    load = _load_ms("audio")
    wave = load_audio(EXAMPLES / "speech_happy.wav")
    with tempfile.TemporaryDirectory() as tmp:
        five = Path(tmp) / "five_seconds.wav"
        sf.write(five, np.resize(wave, 5 * 16000), 16000)
        ten = Path(tmp) / "ten_seconds.wav"
        sf.write(ten, np.resize(wave, 10 * 16000), 16000)
        classify("audio", [str(five)])
        n = max(3, repeats // 4)
        return {"model": resolve("audio").entry.ref, "load_ms": load,
                "clip_5s_with_vad_ms": _median_ms(lambda: classify("audio", [str(five)], transcribe=False), n),
                "clip_10s_with_transcript_ms": _median_ms(lambda: classify("audio", [str(ten)]), n)}


def bench_video(repeats: int) -> dict:
    clip = str(EXAMPLES / "astronaut_happy.mp4")
    classify("video", [clip])
    return {"clip": "examples/astronaut_happy.mp4 (720p, 4.6 s)",
            "end_to_end_ms": _median_ms(lambda: classify("video", [clip]), max(2, repeats // 10))}


BENCHMARKS = {"text": bench_text, "image": bench_image, "audio": bench_audio, "video": bench_video}


def run_benchmarks(modalities: list[str] | None = None, repeats: int = 20) -> dict:
    import torch

    from .pipelines.base import limit_threads
    limit_threads()
    out = {"threads": torch.get_num_threads()}
    for name in modalities or BENCHMARKS:
        try:
            out[name] = BENCHMARKS[name](repeats)
        except (ModelNotFound, ImportError) as exc:  # a modality without a model yet
            out[name] = {"skipped": str(exc)}
    return out
