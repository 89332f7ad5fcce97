"""Throughput of ``batch`` (Ray Data) against ``predict`` (one process) on this machine:
``python benchmarks/bench_batch.py [--n 2000] [--modality image --modality text]``.

The same inputs go through both commands, each run as a user would (a fresh process,
so model loading and, for ``batch``, the local Ray cluster's start-up count): face crops
are FER-2013 PublicTest images and texts CARER's validation rows, read from the shared
data in place (only a manifest naming them is written, to a temporary folder). ``batch``
runs with 1 and 2 workers. Reported: wall seconds and inputs per second end to end, and
for ``batch`` also the workers' classifying rate (inputs over the sum of batch times, per
worker), which leaves start-up out. On a shared machine the load average says how much
of the wall time the neighbours took.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EMOTION_DATA", ROOT.parent / "shared" / "data"))
FER = DATA / "face" / "fer2013"
CARER_VAL = DATA / "text" / "carer" / "val.csv"
WORKER_COUNTS = (1, 2)

log = logging.getLogger("bench_batch")


def face_manifest(folder: Path, n: int) -> Path:
    """``n`` FER-2013 PublicTest crops, evenly spread over its (label-sorted) list."""
    with open(FER / "labels.csv", newline="") as f:
        files = [row["file"] for row in csv.DictReader(f) if row["split"] == "publictest"]
    picked = files[::max(1, len(files) // n)][:n]
    return _write(folder / "faces.csv", "path", [str(FER / name) for name in picked])


def text_manifest(folder: Path, n: int) -> Path:
    with open(CARER_VAL, newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:n]
    return _write(folder / "texts.csv", "text", texts)


def _write(path: Path, column: str, values: list[str]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([column])
        writer.writerows([v] for v in values)
    return path


def timed(args: list[str]) -> float:
    """Wall seconds of ``python -m emotion_app ARGS`` (its output is discarded)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "emotion_app", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - start


def worker_rate(out: Path) -> float:
    """Inputs per second of classifying, per worker: inputs over the sum of batch times."""
    import pandas as pd
    df = pd.read_parquet(out, columns=["seconds"])
    return len(df) / df["seconds"].sum()


def bench(modality: str, manifest: Path, n: int, folder: Path) -> list[dict]:
    rows = []
    seconds = timed(["predict", "--modality", modality, "--manifest", str(manifest), "--json"])
    rows.append({"modality": modality, "command": "predict", "seconds": seconds, "per_s": n / seconds})
    for workers in WORKER_COUNTS:
        out = folder / f"{modality}-{workers}"
        seconds = timed(["batch", "--modality", modality, "--manifest", str(manifest), "--out", str(out),
                         "--workers", str(workers)])
        rows.append({"modality": modality, "command": f"batch --workers {workers}", "seconds": seconds,
                     "per_s": n / seconds, "worker_per_s": worker_rate(out)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="inputs per modality")
    parser.add_argument("--modality", action="append", choices=["image", "text"], help="default: both")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not DATA.is_dir():
        parser.error(f"shared data not found at {DATA} (set EMOTION_DATA)")
    makers = {"image": face_manifest, "text": text_manifest}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        for modality in args.modality or list(makers):
            rows += bench(modality, makers[modality](folder, args.n), args.n, folder)
            log.info("%s done; load average %s", modality, " ".join(f"{x:.2f}" for x in os.getloadavg()))
    log.info("| modality | command | wall s | inputs/s end to end | inputs/s per worker, classifying |")
    log.info("|---|---|---:|---:|---:|")
    for r in rows:
        per_worker = f"{r['worker_per_s']:.1f}" if "worker_per_s" in r else ""
        log.info("| %s | %s | %.1f | %.1f | %s |", r["modality"], r["command"], r["seconds"], r["per_s"], per_worker)


if __name__ == "__main__":
    main()
