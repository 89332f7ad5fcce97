"""Text model speed on this CPU: ``python benchmarks/bench_text.py [--dev-corpus carer]``.

For each text model: load time, one sentence (median of ``--repeats``), a batch of
``--batch`` sentences through ``classify`` (ms per sentence), and a dialogue through
``classify(..., dialogue=True)`` with the turns around each line as context (ms per line). Sentences are the
bundled examples, or a shared dev split's first rows with ``--dev-corpus``. Every model
is warmed up once first. The batch is also timed in process CPU time, and the load
average is printed: on a shared machine wall time mostly measures the neighbours, and
with ``--threads 1`` CPU time is what the batch costs one idle core.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from emotion_app import classify  # noqa: E402
from emotion_app.models.registry import create_model  # noqa: E402

EXAMPLES = ROOT / "examples"
MODELS = ("text-tfidf-lr", "text-minilm", "text-ensemble", "text-dialogue")


def _ms(fn, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    return (clock() - start) * 1000


def sentences(dev_corpus: str | None, n: int) -> list[str]:
    if dev_corpus:
        from training.data import text_split
        return text_split(dev_corpus, "dev")[0][:n]
    lines = (EXAMPLES / "texts.txt").read_text().splitlines()
    return (lines * (n // len(lines) + 1))[:n]


def bench(model: str, texts: list[str], dialogue: list[str], repeats: int) -> dict:
    load = _ms(lambda: create_model(model))
    classify("text", texts[:8], model=model)
    single = statistics.median(_ms(lambda: classify("text", texts[:1], model=model)) for _ in range(repeats))
    batch = _ms(lambda: classify("text", texts, model=model))
    batch_cpu = _ms(lambda: classify("text", texts, model=model), clock=time.process_time)
    turns = _ms(lambda: classify("text", dialogue, model=model, dialogue=True))
    return {"model": model, "load_ms": round(load, 1), "single_sentence_ms": round(single, 2),
            f"batched_ms_per_sentence_{len(texts)}": round(batch / len(texts), 3),
            f"batched_cpu_ms_per_sentence_{len(texts)}": round(batch_cpu / len(texts), 3),
            f"dialogue_ms_per_line_{len(dialogue)}": round(turns / len(dialogue), 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--dev-corpus", choices=("carer", "goemotions", "meld"), default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = sentences(args.dev_corpus, args.batch)
    dialogue = (EXAMPLES / "dialogue.txt").read_text().splitlines() * 32
    results = [bench(m, texts, dialogue, args.repeats) for m in MODELS]
    print(json.dumps({"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                      "load_average_1min": round(os.getloadavg()[0], 2),
                      "sentences": args.dev_corpus or "examples/texts.txt", "results": results}, indent=2))


if __name__ == "__main__":
    main()
