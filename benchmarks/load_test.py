"""Load benchmark: N concurrent gradio_client users against a local ``python app.py``.

    python benchmarks/load_test.py --clients 8 --seconds 60

Starts the app on a free port (also measuring start-to-ready time), then each client
alternates image and text requests until the time is up. Prints p50/p95 latency,
throughput and the error count as JSON. Only ever talks to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["I can't believe we won!", "Leave me alone, I'm so angry.", "I miss you so much.", "What a surprise!"]


def start_app() -> tuple[subprocess.Popen, str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - start < 120:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url, time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("app did not start within 120 s")


def client_loop(url: str, deadline: float, latencies: dict, errors: list, index: int) -> None:
    from gradio_client import Client, handle_file
    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    photo = handle_file(str(ROOT / "examples" / "astronaut.jpg"))
    i = index
    while time.perf_counter() < deadline:
        kind = "image" if i % 2 else "text"
        start = time.perf_counter()
        try:
            if kind == "image":
                client.predict(photo, api_name="/image")
            else:
                client.predict(TEXTS[i % len(TEXTS)], False, api_name="/text")
            latencies[kind].append(time.perf_counter() - start)
        except Exception as exc:  # counted and reported, never hidden
            errors.append(f"{kind}: {exc}")
        i += 1


def summarise(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "p50_ms": round(statistics.median(ordered) * 1000),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    proc, url, ready = start_app()
    try:
        latencies, errors = {"image": [], "text": []}, []
        start = time.perf_counter()
        deadline = start + args.seconds
        threads = [threading.Thread(target=client_loop, args=(url, deadline, latencies, errors, i))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        total = sum(len(v) for v in latencies.values())
        print(json.dumps({"clients": args.clients, "seconds": round(elapsed, 1), "start_to_ready_s": round(ready, 1),
                          "requests": total, "throughput_rps": round(total / elapsed, 2), "errors": len(errors),
                          "first_errors": errors[:3], **{k: summarise(v) for k, v in latencies.items()}}, indent=2))
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
