"""``python -m emotion_app.annotation import --queue NAME PATH...``, ``export --queue NAME
--out DIR``, ``status --queue NAME``."""
from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import InputError, command_line
from .export import export_queue
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
    args = parser.parse_args(argv)
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
    if args.command == "export":
        written = export_queue(store, args.queue, args.out, push_to_hub=args.push_to_hub)
        print(json.dumps({name: str(path) for name, path in written.items()}, indent=2))
        return 0
    progress = store.progress(args.queue)
    print(json.dumps({"queue": args.queue, "items": progress.total, "complete": progress.complete,
                      "required_labels": progress.required, **store.agreement(args.queue)}, indent=2))
    return 0

