"""Frames per second the Live tab analyses: ``python benchmarks/bench_live.py``.

Each frame is a 640x480 webcam-sized JPEG with the astronaut's face in it, as a browser
streams it; a frame is read as the tab reads it (``analyse_frame``: decode at reduced
scale, shrink to 320 px, MTCNN, the face model, boxes drawn), one torch thread, as one
request gets. Prints the median time per frame and the frames per second that allows.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emotion_app.app.live import analyse_frame, new_trace  # noqa: E402


def webcam_frame(folder: Path) -> str:
    """The frame's file, a JPEG like the ones the browser sends."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    face = np.asarray(Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB").resize((360, 360)))
    frame[60:420, 140:500] = face
    path = folder / "frame.jpg"
    Image.fromarray(frame).save(path, quality=90)
    return str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        frame, trace = webcam_frame(Path(tmp)), new_trace()
        analyse_frame(frame, trace)  # loads the models
        times = []
        for _ in range(args.frames):
            start = time.perf_counter()
            _, trace, _, status = analyse_frame(frame, trace)
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({"frame": "640x480 with one face", "frames": args.frames,
                      "median_ms_per_frame": round(median * 1000, 1), "p90_ms": round(sorted(times)[int(0.9 * len(times))] * 1000, 1),
                      "frames_per_second": round(1 / median, 1), "last_status": status}, indent=2))


if __name__ == "__main__":
    main()
