"""``python -m emotion_app.annotation import --queue NAME PATH...``, ``export --queue NAME
--out DIR``, ``status --queue NAME``, ``order --queue NAME --strategy S``, ``rescore --queue
NAME``, ``rounds --queue NAME``, ``simulate --modality text|image --strategy ...``."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..core.errors import InputError, command_line
from .export import export_queue
from .priority import STRATEGIES
from .rescoring import rescore
from .rounds import rounds
from .simulate import MODELS, SIM_STRATEGIES, simulate
from .store import AnnotationStore, default_store


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emotion_app.annotation",
                                     description="Annotation queues: import items, export labels, show progress.")
    parser.add_argument("--data", help="data folder (default: EMOTION_APP_DATA, /data on a Space, else ./data)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import", help="add files, zips, folders, .txt (one text per line) or .csv "
                                      "(a 'text' column, or a 'path' column relative to the CSV) to a queue")
    p.add_argument("--queue", required=True)
    p.add_argument("--required-labels", type=int, help="labels each item needs (k)")
    p.add_argument("paths", nargs="+")
    p = sub.add_parser("export", help="write DIR/dataset (datasets.load_from_disk), DIR/<queue>.parquet "
                                      "and DIR/<modality>.csv manifests of the agreed labels")
    p.add_argument("--queue", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--push-to-hub", metavar="REPO", help="also push the dataset to this Hub repo (needs a token)")
    p = sub.add_parser("status", help="progress and agreement of a queue, as JSON")
    p.add_argument("--queue", required=True)
    p = sub.add_parser("order", help="serve a queue in another order (re-scores its remaining items now)")
    p.add_argument("--queue", required=True)
    p.add_argument("--strategy", choices=STRATEGIES, required=True)
    p = sub.add_parser("rescore", help="predict the queue's remaining items with the active models and "
                                       "recompute its order (after a fine-tune is activated)")
    p.add_argument("--queue", required=True)
    p = sub.add_parser("rounds", help="the queue's learning loop per model (labels, changed pre-annotations, "
                                      "scores), as JSON")
    p.add_argument("--queue", required=True)
    p = sub.add_parser("simulate", help="learning curves: labels revealed per round by a strategy, a head fine-tuned "
                                        "on the model's frozen embeddings, scored on a fixed evaluation set")
    p.add_argument("--modality", choices=sorted(MODELS), required=True)
    p.add_argument("--strategy", nargs="+", choices=list(SIM_STRATEGIES), default=["random", "uncertainty"])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "emotion_app-simulate",
                   help="where curves (JSON, HTML) and cached embeddings go (outside the repository)")
    args = parser.parse_args(argv)
    if args.command == "simulate":
        summary = simulate(args.modality, args.strategy, args.rounds, args.batch, args.seeds, args.out)
        print(json.dumps(summary["strategies"], indent=1))
        print(f"curves: {args.out / f'simulate-{args.modality}.html'}", file=sys.stderr)
        return 0
    store = AnnotationStore(args.data) if args.data else default_store()

    if args.command == "import":
        report = store.import_paths(args.queue, args.paths, source="cli")
        if args.required_labels:
            store.set_required_labels(args.queue, args.required_labels)
        for error in report.errors:
            print(f"[import] skipped {error}", file=sys.stderr)
        print(f"{args.queue}: {report.summary()}")
        return 1 if report.errors and not (report.added or report.duplicates) else 0
    if args.queue not in store.queue_names():
        raise InputError(f"no queue named {args.queue!r}; queues: {', '.join(store.queue_names()) or 'none'}")
    if args.command in ("order", "rescore"):
        if args.command == "order":
            store.set_strategy(args.queue, args.strategy)
        job = rescore(store, args.queue)
        print(job.describe())
        return 1 if job.state == "failed" else 0
    if args.command == "rounds":
        print(json.dumps(rounds(store, args.queue), indent=2))
        return 0
    if args.command == "export":
        written = export_queue(store, args.queue, args.out, push_to_hub=args.push_to_hub)
        print(json.dumps({name: str(path) for name, path in written.items()}, indent=2))
        return 0
    progress = store.progress(args.queue)
    print(json.dumps({"queue": args.queue, "order": store.strategy(args.queue), "items": progress.total,
                      "complete": progress.complete,
                      "required_labels": progress.required, **store.agreement(args.queue)}, indent=2))
    return 0

