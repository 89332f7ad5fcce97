"""Face expression speed on this CPU: ``python benchmarks/bench_image.py [--repeats 10]``.

Warms every model up once, then reports medians of ``--repeats`` runs: the default
ensemble and each member on one face crop and per crop in a batch of 256 (target
<= 20 ms per crop), MTCNN detection alone and a whole photo end to end (load, detect,
crop, classify; target <= 300 ms) on scikit-image's 512x512 astronaut. Both wall and
process CPU time are given, with the load average: on a shared machine wall time also
measures the neighbours. ``--threads 1`` gives steadier numbers on a busy machine, where
two threads of one process mostly wait for each other.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from emotion_app.media.faces import detect_faces  # noqa: E402
from emotion_app.pipelines import classify, resolve  # noqa: E402


def timed(fn, repeats: int, per: int = 1) -> dict:
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1000 / per)
        cpu.append((time.process_time() - c) * 1000 / per)
    return {"wall_ms": round(statistics.median(wall), 2), "cpu_ms": round(statistics.median(cpu), 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    photo = data.astronaut()
    crop = detect_faces(photo)[0].crop
    batch = [crop] * 256
    ensemble = resolve("image")
    report = {"model": ensemble.entry.ref, "threads": torch.get_num_threads()}
    for model in [ensemble, *(m for m, _ in getattr(ensemble, "members", []))]:
        model.predict_proba(batch[:8])  # warm-up
        report[f"{model.entry.id}_single_crop"] = timed(lambda m=model: m.predict_proba([crop]), args.repeats)
        report[f"{model.entry.id}_per_crop_in_batch_256"] = timed(
            lambda m=model: m.predict_proba(batch), max(2, args.repeats // 5), per=len(batch))
    report["detection_512x512"] = timed(lambda: detect_faces(photo), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "astronaut.jpg")
        Image.fromarray(photo).save(path, quality=95)
        classify("image", [path])
        report["photo_end_to_end_512x512"] = timed(lambda: classify("image", [path]), args.repeats)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
