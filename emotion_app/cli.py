"""Command line: ``python -m emotion_app {predict,batch,evaluate,models,bench}``.

``predict --json`` prints exactly one JSON object per input line, in input order;
this is a stable contract that external evaluation relies on.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path

from .core.errors import InputError, command_line
from .core.labels import LABEL_TO_ID, canonical
from .models.fusion import METHODS
from .pipelines import PIPELINES, classify
from .pipelines.text import Turn, classify_conversations

PREDICT_CHUNK = 32  # inputs per pipeline call
# One cell of a manifest: csv's default (128 KB) stops a whole manifest for one long text, which
# prediction cuts to its first 2,000 characters anyway; 20 MB, as the app takes a file of texts.
MAX_FIELD_MB = 20
# What a terminal would act on instead of print: control characters (C0, DEL, C1) and the
# surrogate escapes that stand for bytes that were not UTF-8.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Column names are matched case-insensitively; the aliases read MELD's CSVs as they are.
COLUMN_ALIASES = {"text": ("text", "utterance"), "label": ("label", "emotion"), "dialogue_id": ("dialogue_id",),
                  "speaker": ("speaker",), "utterance_id": ("utterance_id",)}


def read_manifest(path: str, modality: str, with_labels: bool = False, dialogue: bool = False,
                  by_speaker: bool = False):
    """Inputs (and canonical label ids) from a CSV with a ``path`` or ``text`` column.

    Paths are relative to the CSV's folder. Rows whose label has no canonical class
    (e.g. boredom) are dropped and counted; an unknown label stops with its line number.
    With ``dialogue`` (text), each input is a ``Turn`` of the conversation its
    ``dialogue_id`` names, with its optional ``speaker`` and ``utterance_id``. With
    ``by_speaker`` (audio), each input is ``(path, speaker)`` from a ``speaker`` column."""
    manifest = Path(path)
    if not manifest.is_file():
        raise InputError(f"{path}: manifest not found")
    csv.field_size_limit(MAX_FIELD_MB * 1024 * 1024)
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would become part of
    # the first column's name. Undecodable bytes become surrogate escapes: that row fails on
    # its own, the rest go on
    with open(manifest, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        # strict: a quote opened and never closed is an error at the row that opens it, not
        # the rest of the file read silently as one cell
        reader, rows, row_line = csv.DictReader(f, strict=True), [], 2
        try:
            for row in reader:
                rows.append(row)
                row_line = reader.line_num + 1  # line_num: lines finished
        except csv.Error as exc:
            unclosed = " (a quoted cell is never closed)" if "unexpected end of data" in str(exc) else ""
            raise InputError(f"{path}: line {row_line}: {exc}{unclosed}") from None
    if not rows:
        raise InputError(f"{path}: manifest has no rows")
    header = {name.strip().lower(): name for name in rows[0] if name}

    def column(name):
        return next((header[alias] for alias in COLUMN_ALIASES.get(name, (name,)) if alias in header), None)

    value_column = column("text" if modality == "text" else "path")
    if value_column is None:
        raise InputError(f"{path}: {'an' if modality in ('audio', 'image') else 'a'} {modality} manifest needs a "
                         f"'{'text' if modality == 'text' else 'path'}' column")
    label_column = column("label")
    if with_labels and label_column is None:
        raise InputError(f"{path}: manifest needs a 'label' column to evaluate")
    turn_columns = {}
    if dialogue:
        turn_columns = {name: column(name) for name in ("dialogue_id", "speaker", "utterance_id")}
        if turn_columns["dialogue_id"] is None:
            raise InputError(f"{path}: a dialogue manifest needs a 'dialogue_id' column (and may have 'speaker' "
                             "and 'utterance_id')")
    speaker_column = column("speaker") if by_speaker else None
    if by_speaker and speaker_column is None:
        raise InputError(f"{path}: --by-speaker needs a 'speaker' column naming each clip's speaker")
    inputs, labels, dropped = [], [], 0
    for line, row in enumerate(rows, 2):
        if with_labels:
            try:
                label = canonical(row[label_column] or "")
            except ValueError as exc:
                raise InputError(f"{path}: line {line}: {exc}") from None
            if label is None:
                dropped += 1
                continue
            labels.append(LABEL_TO_ID[label])
        value = row[value_column] or ""
        if dialogue:
            value = Turn(value, *((row[c] or "").strip() if c else "" for c in turn_columns.values()), line=line)
        elif modality != "text" and value.strip():
            value = str(manifest.parent / value)
        inputs.append((value, (row[speaker_column] or "").strip()) if speaker_column else value)
    return inputs, labels, dropped


def _dialogue_manifest(args) -> bool:
    return args.dialogue and args.modality == "text"


def _by_speaker(args) -> bool:
    """--by-speaker: an audio manifest read speaker by speaker (``classify_by_speaker``)."""
    if args.by_speaker and (args.modality != "audio" or not args.manifest):
        raise InputError("--by-speaker reads an audio --manifest with a 'speaker' column")
    return args.by_speaker


def _classify(args, inputs):
    """One result per input, in order, yielded as each chunk of PREDICT_CHUNK inputs is
    done: the output streams, and memory holds one chunk, not the whole manifest. A
    dialogue is read whole (its turns are each other's context); a dialogue manifest's
    turns conversation by conversation."""
    if inputs and isinstance(inputs[0], Turn):
        yield from classify_conversations(inputs, model=args.model)
        return
    if inputs and isinstance(inputs[0], tuple):  # (path, speaker): read speaker by speaker, then in input order
        from .pipelines.audio import classify_by_speaker
        yield from classify_by_speaker(*zip(*inputs), model=args.model, transcribe=not args.no_transcribe)
        return
    options = _options(args)
    chunk = len(inputs) if options.get("dialogue") else PREDICT_CHUNK
    for start in range(0, len(inputs), max(chunk, 1)):
        yield from classify(args.modality, inputs[start:start + chunk], model=args.model, **options)


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: by device and inode where both exist (a link or
    another spelling of it), else by absolute path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.abspath(a) == os.path.abspath(b)


def _check_out(out: str, sources) -> None:
    """--out is emptied when it is opened, before any input is read: refuse it where it
    is an input or the manifest, so the run cannot erase what it was to read."""
    for source in sources:
        if _same_file(out, source):
            raise InputError(f"predict: --out {out} is also an input ({source}): writing there would erase it")


def _one_line(value) -> str:
    """``value`` printable as one line of plain output: a carriage return, a newline, an
    escape sequence or a byte that was not UTF-8 is written as its escape, not acted on
    by the terminal or refused by a strict stdout."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], str(value))


def _json_line(result: dict) -> str:
    line = json.dumps(result, ensure_ascii=False, default=str)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in an input (surrogate escapes): written escaped
        line = json.dumps(result, default=str)
    return line


def _options(args) -> dict:
    options = {}
    if getattr(args, "dialogue", False):
        options["dialogue"] = True
    if getattr(args, "fusion", None):
        options["fusion"] = args.fusion
    if getattr(args, "no_transcribe", False):
        options["transcribe"] = False
    return options


def cmd_predict(args) -> int:
    inputs = list(args.inputs)
    by_speaker = _by_speaker(args)  # refused early where it cannot apply
    if args.manifest:
        if _dialogue_manifest(args) and inputs:
            raise InputError("predict: --dialogue --manifest reads the conversations from the manifest; "
                             "give no other inputs")
        if by_speaker and inputs:
            raise InputError("predict: --by-speaker reads the clips and their speakers from the manifest; "
                             "give no other inputs")
        inputs += read_manifest(args.manifest, args.modality, dialogue=_dialogue_manifest(args),
                                by_speaker=by_speaker)[0]
    if not inputs:
        raise InputError("predict: give inputs or --manifest")
    # os.path.isfile: a text over 255 bytes is no file name (Path.is_file raises OSError on it)
    if args.modality == "text" and any(os.path.isfile(x) for x in args.inputs):
        print("note: text inputs are read as text, even one that names a file; for a file's texts use "
              "--manifest with a 'text' column", file=sys.stderr)
    if args.out:
        paths = [x[0] if isinstance(x, tuple) else x for x in inputs] if args.modality != "text" else []
        _check_out(args.out, ([args.manifest] if args.manifest else []) + paths)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    failed = 0
    for r in _classify(args, inputs):
        failed += "error" in r
        line = _json_line(r)
        if out:
            out.write(line + "\n")
        if args.json:
            print(line)
        elif "error" in r:
            print(f"{_one_line(r['input'])}\tERROR\t{_one_line(r['error'])}")
        else:
            top = sorted(r["probs"].items(), key=lambda kv: -kv[1])[:3]
            fused = r.get("fused") if r.get("fused", {}).get("label") != r["label"] else None  # audio: with its words
            by_speaker = f"\tread with speaker {_one_line(r['speaker'])}'s {r['speaker_clips']} clips" \
                if r.get("speaker_normalised") else ""
            print(f"{_one_line(r['input'])}\t{r['label']}\t" + "  ".join(f"{k} {v:.2f}" for k, v in top)
                  + (f"\tfused with the transcript: {fused['label']} {fused['probs'][fused['label']]:.2f}" if fused else "")
                  + by_speaker)
    if out:
        out.close()
    if failed == len(inputs):
        print(f"predict: every input failed ({failed})", file=sys.stderr)
        return 1
    return 0


def cmd_batch(args) -> int:
    from .batch import list_input_dir, run_batch
    from .models.registry import get_entry

    if args.model:
        get_entry(args.model)  # an unknown model stops here, before a cluster starts
    by_speaker = _by_speaker(args)
    if by_speaker and args.batch_size:
        raise InputError("--batch-size does not apply with --by-speaker: each speaker's clips are one batch, "
                         "read together")
    inputs = read_manifest(args.manifest, args.modality, by_speaker=by_speaker)[0] if args.manifest else \
        list_input_dir(args.input_dir, args.modality)
    speakers = None
    if by_speaker:  # a model without a speaker head stops here, not in every worker
        from .pipelines.audio import SPEAKER_HEAD_MODEL, speaker_head
        speaker_head(get_entry(args.model or SPEAKER_HEAD_MODEL))
        inputs, speakers = [path for path, _ in inputs], [speaker for _, speaker in inputs]
    summary = run_batch(inputs, args.modality, args.out, model=args.model, options=_options(args),
                        address=args.address, workers=args.workers, batch_size=args.batch_size, speakers=speakers)
    return 0 if summary["classified"] else 1


def cmd_evaluate(args) -> int:
    import numpy as np

    from .core.metrics import classification_metrics

    inputs, labels, dropped = read_manifest(args.manifest, args.modality, with_labels=True,
                                           dialogue=_dialogue_manifest(args), by_speaker=_by_speaker(args))
    results = list(_classify(args, inputs))
    scored = [(y, LABEL_TO_ID[r["label"]]) for y, r in zip(labels, results) if "error" not in r]
    failed = [r for r in results if "error" in r]
    for r in failed:
        message = r["error"] if str(r["input"]) in r["error"] else f"{r['input']}: {r['error']}"
        print(f"[evaluate] {_one_line(message)}", file=sys.stderr)
    if not scored:
        raise InputError("evaluate: every input failed")
    y_true, y_pred = np.array(scored).T
    report = classification_metrics(y_true, y_pred)
    models = sorted({r["model"] for r in results if "model" in r})
    report.update({"model": ",".join(models), "failed": len(failed), "dropped_labels": dropped})
    print(json.dumps(report, indent=None if args.compact else 2))
    return 0


def cmd_models(args) -> int:
    from .models.registry import active_model, list_models

    entries = list_models(args.modality)
    active = {}
    for m in sorted({e.modality for e in entries}):
        active[m] = active_model(m).ref
    for e in entries:
        mark = "*" if active.get(e.modality) == e.ref else " "
        headline = e.evaluation("headline")
        score = f"{headline[0]} acc {headline[1]['accuracy']:.3f} wF1 {headline[1]['weighted_f1']:.3f}" if headline else ""
        if args.json:
            print(json.dumps({"id": e.id, "version": e.version, "modality": e.modality, "architecture": e.architecture,
                              "source": e.source, "active": mark == "*", "hub_repo": e.hub_repo,
                              "folder": str(e.folder)}))
        else:
            print(f"{mark} {e.ref:28s} {e.modality:6s} {e.architecture:16s} {e.source:8s} {score}")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_benchmarks
    print(json.dumps(run_benchmarks(args.modality, repeats=args.repeats), indent=2))
    return 0


def cmd_users(args) -> int:
    """Manage the users file of a self-hosted app (passwords are stored as scrypt hashes)."""
    import getpass

    from .app import access

    if args.action == "list":
        for name, user in sorted(access.read_users().items()):
            print(f"{name:20s} {user['role']:10s} {','.join(user.get('queues', []))}")
        return 0
    if args.action == "remove":
        users = access.read_users()
        if users.pop(args.name, None) is None:
            raise InputError(f"no user {args.name!r} in {access.users_file()}")
        access.write_users(users)
        print(f"removed {args.name} from {access.users_file()}")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise InputError("the two passwords differ")
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    path = access.add_user(args.name, password, args.role, queues)
    print(f"{args.name} ({args.role}) saved in {path}")
    return 0


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emotion_app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_common(p, dialogue=True):
        p.add_argument("--modality", required=True, choices=sorted(PIPELINES))
        p.add_argument("--model", help="registry id or id@version (default: the active model)")
        if dialogue:
            p.add_argument("--dialogue", action="store_true", help="text: inputs are 'Speaker: utterance' turns of one "
                           "conversation, each read with the turns around it (model text-dialogue unless --model)")
        p.add_argument("--fusion", choices=list(METHODS), help="video: fusion method (default late)")
        p.add_argument("--no-transcribe", action="store_true", help="audio/video: skip the transcript")
        p.add_argument("--by-speaker", action="store_true", help="audio manifest with a 'speaker' column: read "
                       "each speaker's clips together with the model's speaker head (for clips across several "
                       "emotions; see the model card)")

    p = sub.add_parser("predict", help="classify inputs")
    add_common(p)
    p.add_argument("inputs", nargs="*", help="file paths (texts for --modality text)")
    p.add_argument("--manifest", help="CSV with a 'path' (relative to the CSV) or 'text' column")
    p.add_argument("--json", action="store_true", help="one JSON object per input line")
    p.add_argument("--out", help="also write the JSON lines to this file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("batch", help="classify a corpus on Ray Data into Parquet shards (resumable)")
    add_common(p, dialogue=False)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV with a 'path' (relative to the CSV) or 'text' column")
    source.add_argument("--input-dir", help="every file of the modality's kinds under this folder")
    p.add_argument("--out", required=True, help="folder of Parquet shards; rerun with it to resume")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--workers", type=_positive, help="model-holding workers (default: one per CPU of the cluster)")
    p.add_argument("--batch-size", type=_positive, help="inputs per batch (default: by modality)")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("evaluate", help="score a labelled manifest")
    add_common(p)
    p.add_argument("--manifest", required=True, help="CSV with a 'label' column")
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("models", help="list the registry")
    p.add_argument("--modality", choices=sorted(PIPELINES) + ["fusion"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("users", help="sign-in users of a self-hosted app (the users file)")
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("name", nargs="?", help="user name (add, remove)")
    p.add_argument("--role", choices=["visitor", "annotator", "admin"], default="annotator")
    p.add_argument("--queues", help="annotator: comma-separated queues they may label (default: all)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin, not a prompt")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("bench", help="speed benchmarks on this machine")
    p.add_argument("--modality", action="append", choices=sorted(PIPELINES), help="limit to these modalities")
    p.add_argument("--repeats", type=_positive, default=20)
    p.set_defaults(func=cmd_bench)
    return parser


@command_line
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "users" and args.action != "list" and not args.name:
        parser.error(f"users {args.action} needs a user name")
    return args.func(args)
