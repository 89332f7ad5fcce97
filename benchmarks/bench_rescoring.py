"""Re-scoring a queue after a fine-tune is activated: ``python benchmarks/bench_rescoring.py
[--texts 10000] [--images 2000]``.

A text queue of XED subtitle lines and an image queue of RAF-DB photos (read from the
shared data; the store, with its copies of the media, is made in a temporary folder) are
switched to uncertainty order, then re-scored by the active models as the background
job does after an activation. Reported: seconds, items per second, and the load average
(the machine is shared).
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EMOTION_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=2_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from emotion_app.annotation import AnnotationStore, rescoring
    from emotion_app.models.registry import active_model
    with tempfile.TemporaryDirectory() as folder:
        store = AnnotationStore(Path(folder))
        with open(DATA / "text" / "xed" / "en.csv", newline="", encoding="utf-8") as f:
            texts = [row["text"] for row in csv.DictReader(f)][:args.texts]
        (Path(folder) / "texts.txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
        faces = sorted((DATA / "face" / "rafdb" / "train").rglob("*.jpg"))[:args.images]
        for queue, inputs in (("texts", [Path(folder) / "texts.txt"]), ("faces", faces)):
            if not (args.texts if queue == "texts" else args.images):
                continue
            report = store.import_paths(queue, inputs)
            store.set_strategy(queue, "margin")
            started = time.time()
            job = rescoring.rescore(store, queue)
            seconds = time.time() - started
            modality = "text" if queue == "texts" else "image"
            print(f"{queue}: {len(report.added)} items, {active_model(modality).ref}: {job.describe()}; "
                  f"{seconds:.0f} s, {job.done / seconds:.1f} items/s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
