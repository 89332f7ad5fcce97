"""Re-scoring a queue in the background, so its order follows the current model.

When a queue is served in an order other than insertion, each item still needing labels
carries the active model's prediction and a priority computed from it (``priority``).
After a fine-tune is activated (the registry's active model changes), or when an admin
picks another order, a background thread predicts the items whose prediction is from
another model, in batches, and rewrites the priorities; annotators keep working
meanwhile (each batch is one short write). A run is bounded (``MAX_SECONDS``): what it did
not reach keeps its old priority and is taken up by the next run. An item its model cannot
read (corrupt media) is flagged once and served last, never re-scored again.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import ModelNotFound
from ..core.labels import LABELS
from ..media.faces import main_face_crop
from ..media.images import load_image
from ..models.registry import active_model
from ..pipelines import classify, resolve
from .priority import DISAGREEMENT, DIVERSITY, INSERTION, priorities
from .store import AnnotationStore, Item

log = logging.getLogger(__name__)

SCORE_BATCH = 32  # items predicted per model call and per write
MAX_SECONDS = 20 * 60  # one run's bound; the next run goes on from where it stopped
EMBEDDED = ("text", "image")  # modalities whose items diversity spreads by embedding (others: by uncertainty)


@dataclass
class Job:
    """One run's progress, as the Annotate tab and the CLI show it."""
    queue: str
    strategy: str
    total: int = 0  # items needing a new prediction
    done: int = 0
    flagged: int = 0
    state: str = "running"  # running | done | stopped (time bound) | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    message: str = ""

    def describe(self) -> str:
        seconds = (self.finished or time.time()) - self.started
        text = (f"Re-scoring for the {self.strategy} order: {self.done} of {self.total} items predicted"
                f"{f', {self.flagged} unreadable (flagged, served last)' if self.flagged else ''} · {self.state}"
                f" ({seconds:.0f} s)")
        return text + (f" · {self.message}" if self.message else "")


_jobs: dict[tuple[Path, str], Job] = {}
_lock = threading.Lock()


def status(store: AnnotationStore, queue: str) -> Job | None:
    """The queue's latest run in this process, if any."""
    return _jobs.get((store.root, queue))


def outdated(store: AnnotationStore, queue: str) -> bool:
    """Whether the queue's order rests on a model that is no longer active (or on none).
    A modality with no model available is never outdated: there is nothing to score with."""
    if store.strategy(queue) == INSERTION:
        return False
    active = {}
    for item, scored_by in store.to_score(queue):
        if item.modality not in active:
            try:
                active[item.modality] = active_model(item.modality).ref
            except ModelNotFound:
                active[item.modality] = scored_by
        if scored_by != active[item.modality]:
            return True
    return False


def start(store: AnnotationStore, queue: str, force: bool = False) -> Job | None:
    """Re-score the queue in a background thread, unless a run is going on already (that
    run is returned) or, without ``force``, nothing is outdated (None)."""
    with _lock:
        running = _jobs.get((store.root, queue))
        if running and running.state == "running":
            return running
        if not force and not outdated(store, queue):
            return None
        job = Job(queue, store.strategy(queue))
        _jobs[(store.root, queue)] = job
    threading.Thread(target=rescore, args=(store, queue, job), name=f"rescore-{queue}", daemon=True).start()
    return job


def start_outdated(store: AnnotationStore) -> list[str]:
    """After a model is activated or rolled back: re-score, in the background, every queue
    whose order rests on a model no longer active. Returns those queues."""
    return [queue for queue in store.queue_names() if start(store, queue) is not None]


def rescore(store: AnnotationStore, queue: str, job: Job | None = None, max_seconds: float = MAX_SECONDS) -> Job:
    """Predict what needs predicting, then rewrite the queue's priorities (in this thread)."""
    job = job or Job(queue, store.strategy(queue))
    try:
        _rescore(store, queue, job, time.time() + max_seconds)
        job.state = "stopped" if job.done < job.total else "done"
    except Exception as exc:  # noqa: BLE001 - a failed run is reported; annotation goes on in the old order
        log.exception("re-scoring %r failed", queue)
        job.state, job.message = "failed", str(exc)
    job.finished = time.time()
    return job


def _rescore(store: AnnotationStore, queue: str, job: Job, deadline: float) -> None:
    remaining = [item for item, _ in store.to_score(queue)]
    by_modality: dict[str, list[Item]] = {}
    for item in remaining:
        by_modality.setdefault(item.modality, []).append(item)
    models = {modality: active_model(modality).ref for modality in by_modality}
    latest = store.latest_predictions([item.id for item in remaining])
    todo = [item for item in remaining if latest.get(item.id, {}).get("model") != models[item.modality]]
    job.total = len(todo)
    for start in range(0, len(todo), SCORE_BATCH):
        if time.time() > deadline:
            job.message = "time bound reached: the next run goes on from here"
            break
        batch = todo[start:start + SCORE_BATCH]
        predicted = []
        for item, result in zip(batch, _predict(batch)):
            if "probs" in result:
                predicted.append((item.id, result))
                latest[item.id] = result
            else:
                store.flag_unscorable(queue, item.id, result.get("error", "no prediction"))
                latest.pop(item.id, None)
                job.flagged += 1
        store.store_predictions(predicted)
        job.done += len(batch)
    flagged = store.unscorable(queue)
    scored = [item for item in remaining if item.id in latest and item.id not in flagged]
    store.set_priorities(queue, _priorities(store, queue, job.strategy, scored, latest))


def _predict(batch: list[Item]) -> list[dict]:
    """The active model's result per item; a batch that fails is retried item by item,
    so one broken file fails alone."""
    modality = batch[0].modality
    try:
        return classify(modality, [item.input for item in batch])
    except Exception:  # noqa: BLE001 - find the item that broke it
        if len(batch) == 1:
            log.exception("item %s cannot be scored", batch[0].id)
            return [{"error": "the model failed on this item"}]
        return [result for item in batch for result in _predict([item])]


def _priorities(store: AnnotationStore, queue: str, strategy: str, scored: list[Item],
                latest: dict[int, dict]) -> dict[int, tuple[float, str]]:
    """Priorities per modality (diversity spreads each modality's items in its own
    embedding space), on the same 0-1 scale."""
    votes = store.current_votes(queue) if strategy == DISAGREEMENT else {}
    out = {}
    for modality in {item.modality for item in scored}:
        group = [item for item in scored if item.modality == modality]
        probs = np.array([[latest[item.id]["probs"][label] for label in LABELS] for item in group])
        embeddings = _embeddings(modality, group) if strategy == DIVERSITY else None
        values = priorities(strategy, probs, embeddings, [votes.get(item.id, []) for item in group],
                                     [latest[item.id]["label"] for item in group])
        out.update({item.id: (float(v), latest[item.id]["model"]) for item, v in zip(group, values)})
    return out


def _embeddings(modality: str, group: list[Item]) -> np.ndarray | None:
    """The active model's embeddings of the items (an ensemble's first member that has
    them); None where the model or modality offers none, or reading fails."""
    if modality not in EMBEDDED:
        return None
    model = resolve(modality)
    members = [model] + [member for member, _ in getattr(model, "members", [])]
    embedder = next((m for m in members if m.embedding_dim), None)
    if embedder is None:
        return None
    try:
        inputs = [item.text if modality == "text" else main_face_crop(load_image(item.input))[0] for item in group]
        return np.concatenate([embedder.embed(inputs[i:i + SCORE_BATCH]) for i in range(0, len(inputs), SCORE_BATCH)])
    except Exception:  # noqa: BLE001 - without embeddings the order is uncertainty alone
        log.exception("no embeddings for the diversity order: uncertainty alone")
        return None
