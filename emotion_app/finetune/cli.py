"""``python -m emotion_app.finetune {submit,status,cancel,activate,rollback,work,run}``:
see ``runner`` for what each does."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..core.errors import command_line
from . import runner
from .data import MODALITIES
from .jobs import FINISHED_STATES, Job, JobStore, read_progress
from .runner import DEFAULT_EPOCHS, VALIDATION_LIMIT, activate, cancel, rollback, run_job, submit, work
from .train import COMPARISON_HEADERS, comparison_rows, too_few_to_tell


def _print_job(job: Job) -> None:
    result = {k: v for k, v in (job.result or {}).items() if k != "evaluations"}
    print(json.dumps({"id": job.id, "modality": job.modality, "status": job.status, "error": job.error,
                      "spec": job.spec, "result": result or None}, indent=2))
    if job.result:
        for row in [COMPARISON_HEADERS] + comparison_rows(job.result):
            print("\t".join(str(v) for v in row))
        warning = too_few_to_tell(job.result)
        if warning:
            print(f"warning: {warning}")
        if job.status == "done":
            print(f"To use it: python -m emotion_app.finetune activate {job.id}")


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emotion_app.finetune", description=runner.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit", help="check labelled data and queue a fine-tune of the active model")
    p.add_argument("--modality", required=True, choices=MODALITIES)
    p.add_argument("upload", nargs="?", help="zip (path,label / text,label manifest, or label folders), CSV or folder")
    p.add_argument("--queue", help="an annotation queue's agreed labels instead of an upload")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--validation-limit", type=int, default=VALIDATION_LIMIT,
                   help="examples per own validation set (0: all)")
    p.add_argument("--wait", action="store_true", help="print progress until the job ends")
    for name in ("run", "cancel", "activate", "rollback"):
        sub.add_parser(name).add_argument("job")
    sub.add_parser("work", help="run queued jobs one at a time (started by submit)")
    sub.add_parser("status").add_argument("job", nargs="?")
    args = parser.parse_args(argv)

    if args.command == "run":
        return run_job(args.job)
    if args.command == "work":
        work()
        return 0
    if args.command == "submit":
        job, report = submit(args.modality, args.upload, args.queue, args.epochs, args.validation_limit or None)
        print(report.markdown(), file=sys.stderr)
        if job is None:
            return 2
        print(f"queued job {job.id}", file=sys.stderr)
        if args.wait:
            seen = 0
            while (job := JobStore().get(job.id)).status not in FINISHED_STATES:
                events = read_progress(job)
                for event in events[seen:]:
                    print(json.dumps(event), file=sys.stderr)
                seen = len(events)
                time.sleep(1)
            _print_job(job)
            return 0 if job.status == "done" else 1
        return 0
    if args.command == "status" and args.job:
        _print_job(JobStore().get(args.job))
        return 0
    if args.command == "status":
        for job in JobStore().jobs():
            print(f"{job.id}\t{job.modality}\t{job.status}\t{job.spec['source']}")
        return 0
    print({"cancel": cancel, "activate": activate, "rollback": rollback}[args.command](args.job))
    return 0

