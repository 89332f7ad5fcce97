"""Corpus-scale batch analysis on Ray Data: ``python -m emotion_app batch``.

The same pipelines as ``predict`` run in ``map_batches`` on a pool of actors, one per
worker, each holding its model. Every batch is written by the actor that classified it
as one Parquet shard, atomically (a temporary file renamed into place) and named by its
contents: a killed worker or a stopped run loses only the batches in flight, and a
batch Ray retries rewrites the same shard, so no input is written twice. A rerun with
the same ``--out`` reads the shards and classifies only what they lack. With
``--by-speaker`` (audio), each speaker's pending clips are one batch (Ray Data's
``groupby(...).map_groups``), read by ``pipelines.audio.classify_by_speaker``.

A row is an input's result: ``index`` (its position in the inputs), ``input``,
``label``, the seven probabilities (one column each), ``model``, ``uncertain``,
``error`` (null when classified), ``timeline`` (JSON: video per second, audio per speech
segment), ``details`` (JSON: the rest of the result), and the timings ``seconds`` (its
share of its batch's time), ``batch_seconds`` and ``worker`` (host:pid).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections import Counter
from pathlib import Path

from .core.errors import InputError
from .core.labels import LABELS
from .media.formats import AUDIO_KINDS, IMAGE_KINDS, VIDEO_KINDS

log = logging.getLogger(__name__)

# Inputs per batch: texts are cheap and batch well; each clip is a batch of its own.
BATCH_SIZES = {"text": 256, "image": 32, "audio": 4, "video": 1}
INPUT_KINDS = {"image": IMAGE_KINDS, "audio": AUDIO_KINDS, "video": VIDEO_KINDS}  # for --input-dir
TIMELINE_KEYS = {"video": "timeline", "audio": "segments"}
CPUS_PER_WORKER = 1  # the pipelines run one torch thread (see pipelines.base.limit_threads)
# Times Ray reruns a batch whose worker died (the worker itself is restarted, Ray Data's
# default); a batch that kills its worker every time (a crashing decoder) then gets error
# rows and the run goes on. Passed as an actor option, which Ray removes in 2.64
# (requirements.txt pins below it).
BATCH_RETRIES = 2
# Environment a worker on another node needs to find the same models.
FORWARDED_ENV = ("EMOTION_APP_DATA", "EMOTION_APP_HUB_MODELS", "EMOTION_APP_THREADS", "HF_HUB_OFFLINE", "HF_HOME")
SHARD_GLOB = "part-*.parquet"
TEMP_SUFFIX = ".tmp"
SUMMARY_ROWS = 10  # error reasons shown at the end
WORKER_DIED = "its worker died {} times on this input's batch (a crash in a decoder or out of memory?)"


def schema():
    """One schema for every shard, whatever its batch held (an all-error batch too), so
    the folder reads as one table."""
    import pyarrow as pa
    return pa.schema([("index", pa.int64()), ("input", pa.string()), ("label", pa.string()),
                      *[(label, pa.float64()) for label in LABELS], ("model", pa.string()),
                      ("uncertain", pa.bool_()), ("error", pa.string()), ("timeline", pa.string()),
                      ("details", pa.string()), ("seconds", pa.float64()), ("batch_seconds", pa.float64()),
                      ("worker", pa.string())])


def storable(value) -> str:
    """An input as a Parquet string: undecodable bytes (surrogate escapes from the
    manifest reader) written backslash-escaped."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def list_input_dir(folder: str, modality: str) -> list[str]:
    """Every file under ``folder`` (recursively, sorted) of a kind the modality reads."""
    if modality not in INPUT_KINDS:
        raise InputError(f"batch: --input-dir reads files; give {modality} inputs in a --manifest "
                         "with a 'text' column")
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{folder}: input folder not found")
    files = sorted(str(p) for p in root.rglob("*") if p.is_file()
                   and p.suffix.lower().lstrip(".") in INPUT_KINDS[modality])
    if not files:
        raise InputError(f"{folder}: no {modality} files ({', '.join(INPUT_KINDS[modality])})")
    return files


def to_row(modality: str, index: int, result: dict, seconds: float, batch_seconds: float, worker: str) -> dict:
    rest = dict(result)
    probs = rest.pop("probs", {})
    timeline = rest.pop(TIMELINE_KEYS.get(modality, ""), None)
    row = {"index": int(index), "input": storable(rest.pop("input")), "label": rest.pop("label", None),
           **{label: probs.get(label) for label in LABELS}, "model": rest.pop("model", None),
           "uncertain": rest.pop("uncertain", None), "error": rest.pop("error", None),
           "timeline": None if timeline is None else json.dumps(timeline, default=str),
           "details": json.dumps(rest, default=str) if rest else None,
           "seconds": seconds, "batch_seconds": batch_seconds, "worker": worker}
    return row


def write_shard(out: Path, rows: list[dict]) -> Path:
    """Rows as one shard, named by the (index, input) pairs it holds: a retried batch
    replaces its own shard. Written to a temporary name first, so a shard is whole or absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    digest = hashlib.sha1(json.dumps([(r["index"], r["input"]) for r in rows]).encode()).hexdigest()[:20]
    path = out / f"part-{digest}.parquet"
    temp = out / f".{path.name}.{os.getpid()}{TEMP_SUFFIX}"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema()), temp)
    os.replace(temp, path)
    return path


class Classifier:
    """A Ray worker: loads the modality's pipeline once, then classifies batches and
    writes each as a shard. Returns each input's index and outcome for the counts."""

    def __init__(self, modality: str, model: str | None, options: dict, out: str, by_speaker: bool = False):
        from .pipelines.base import limit_threads, pipeline_for
        limit_threads()
        self.modality, self.out, self.model, self.options = modality, Path(out), model, options
        self.pipeline = pipeline_for(modality, model, **options)
        self.by_speaker = by_speaker
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        start = time.perf_counter()
        inputs = [bytes(x).decode("utf-8", "surrogateescape") for x in batch["input"]]
        if self.by_speaker:  # the batch is one speaker's clips
            from .pipelines.audio import classify_by_speaker
            results = list(classify_by_speaker(inputs, list(batch["speaker"]), model=self.model,
                                               transcribe=self.options.get("transcribe", True)))
        else:
            results = self.pipeline(inputs)
        took = time.perf_counter() - start
        rows = [to_row(self.modality, i, r, took / len(inputs), took, self.worker)
                for i, r in zip(batch["index"], results)]
        write_shard(self.out, rows)
        return {"index": batch["index"], "failed": [r["error"] is not None for r in rows]}


def read_output(out: Path, columns: list[str]):
    """The shards written so far as one table (only ``columns``), or None."""
    import pyarrow.parquet as pq
    if not any(out.glob(SHARD_GLOB)):
        return None
    return pq.read_table(out, columns=columns, schema=schema())


def pending_inputs(inputs: list[str], out: Path) -> list[tuple[int, str]]:
    """(index, input) for the inputs ``out`` has no row for yet. Inputs are matched by
    value, as many times as they were answered: a grown manifest or folder resumes too."""
    done = read_output(out, ["input"])
    answered = Counter(done.column("input").to_pylist()) if done is not None else Counter()
    pending = []
    for index, value in enumerate(inputs):
        key = storable(value)
        if answered[key]:
            answered[key] -= 1
        else:
            pending.append((index, value))
    return pending


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one;
    True when this call started the session (and so should end it). A session already
    open in this process is used as it is."""
    import ray
    if ray.is_initialized():
        return False
    env = {"env_vars": {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, runtime_env=env, log_to_driver=False)
    return True


def default_workers() -> int:
    import ray
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // CPUS_PER_WORKER)


def classify_on_ray(pending: list[tuple[int, str]], modality: str, out: Path, model: str | None, options: dict,
                    workers: int | None, batch_size: int, speakers: list[str] | None = None) -> Counter:
    """Run the pending inputs through the actor pool; counts of classified and failed.
    With ``speakers`` (one per input of the whole manifest), a batch is one speaker's."""
    import ray
    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = -1  # a batch that failed every retry is answered below, not fatal
    items = [{"index": i, "input": str(x).encode("utf-8", "surrogateescape"),
              **({"speaker": speakers[i]} if speakers else {})} for i, x in pending]
    ds = ray.data.from_items(items, override_num_blocks=-(-len(items) // batch_size))
    actors = {"fn_constructor_kwargs": {"modality": modality, "model": model, "options": options, "out": str(out),
                                        "by_speaker": bool(speakers)},
              "num_cpus": CPUS_PER_WORKER, "compute": ray.data.ActorPoolStrategy(size=workers or default_workers()),
              "max_task_retries": BATCH_RETRIES}
    if speakers:
        results = ds.groupby("speaker").map_groups(Classifier, batch_format="numpy", **actors)
    else:
        results = ds.map_batches(Classifier, batch_size=batch_size, **actors)
    counts = Counter()
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        counts["failed"] += int(batch["failed"].sum())
        counts["classified"] += int((~batch["failed"]).sum())
    return counts


def answer_lost(inputs: list[str], modality: str, out: Path) -> int:
    """Error rows for the inputs no shard holds after a run (their batch killed its worker on every try)."""
    lost = pending_inputs(inputs, out)
    if lost:
        reason = WORKER_DIED.format(BATCH_RETRIES + 1)
        write_shard(out, [to_row(modality, i, {"input": x, "error": reason}, 0.0, 0.0, "") for i, x in lost])
    return len(lost)


def summarise(out: Path) -> dict:
    """Counts over the whole output folder (this run and earlier ones), logged as a table."""
    table = read_output(out, ["input", "label", "error"]).to_pandas()
    failed = table[table["error"].notna()]
    reasons = Counter(str(e).replace(str(x), "").lstrip(": ") for x, e in zip(failed["input"], failed["error"]))
    summary = {"rows": len(table), "classified": len(table) - len(failed), "failed": len(failed),
               "labels": dict(Counter(table["label"].dropna()).most_common()),
               "errors": dict(reasons.most_common(SUMMARY_ROWS))}
    lines = [f"{out}: {summary['rows']} rows, {summary['classified']} classified, {summary['failed']} failed"]
    lines += [f"  {label:10s} {n:8d}" for label, n in summary["labels"].items()]
    lines += [f"  error x{n}: {reason}" for reason, n in summary["errors"].items()]
    log.info("\n".join(lines))
    return summary


def run_batch(inputs: list[str], modality: str, out: str, *, model: str | None = None, options: dict | None = None,
              address: str | None = None, workers: int | None = None, batch_size: int | None = None,
              speakers: list[str] | None = None) -> dict:
    """Classify ``inputs`` into Parquet shards under ``out``, skipping those it already
    holds; returns the summary of the whole folder. ``speakers`` (audio, one per input):
    read speaker by speaker; a resumed run reads only a speaker's clips not yet answered."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".part-*{TEMP_SUFFIX}"):  # from a worker killed mid-write
        stale.unlink()
    pending = pending_inputs(inputs, folder)
    log.info("%d inputs: %d already in %s, %d to classify", len(inputs), len(inputs) - len(pending), out,
             len(pending))
    if pending:
        import ray
        started = connect(address)
        try:
            counts = classify_on_ray(pending, modality, folder, model, options or {}, workers,
                                     batch_size or BATCH_SIZES[modality], speakers)
        finally:
            if started:
                ray.shutdown()
        counts["lost"] = answer_lost(inputs, modality, folder)
        log.info("this run: %d classified, %d failed, %d lost with their worker", counts["classified"],
                 counts["failed"], counts["lost"])
    return summarise(folder)
