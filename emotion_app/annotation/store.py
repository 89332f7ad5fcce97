"""Annotation queues: durable storage of items, model predictions and human labels.

One database holds everything: an SQLite file (WAL) in the data folder, or the
PostgreSQL server ``DATABASE_URL`` names, for a team or several replicas (``database``
says how transactions behave on each). Media files are stored content-addressed in the
data folder (``media/<sha256[:2]>/<sha256>.<ext>``), so the same file uploaded twice is
one item. Every change is one write transaction, which takes the database's write lock
first: writers queue instead of failing, and each check-then-write is race-free. Label
rows are never deleted: a changed or undone label is marked superseded (undoing a change
makes the label it replaced current again), and every change is also written to
``history``. A label carries the submitting client's token, so a retried submit is
stored once. Media, staged by ``annotation_import``, are written (temp file, fsync,
rename) before the row that names them commits. The schema is versioned (``migrations``).

Several annotators share a queue through leases: an annotator is offered an item that
needs labels, that they have not answered, and that nobody else holds. The lease is
short (``LEASE_SECONDS``) and the page showing the item renews it (``renew``) while it
is open, so a closed browser gives its item back within minutes; leaving the page
releases it at once (``release``). Items are offered in insertion order, or by the
priority the queue's order gives them (``priority``; computed by ``rescoring``), highest
first; an item not scored yet comes after the scored ones.

"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np
from sqlalchemy import ColumnElement, and_, case, exists, func, insert, select, update

from ..core.errors import InputError
from ..core.labels import LABELS
from ..core.paths import data_dir
from ..core.results import label_probs
from ..media.faces import detect_faces, is_ready_crop
from ..media.images import as_rgb, load_image
from ..pipelines import classify, resolve
from ..pipelines.image import classify_crops
from ..pipelines.text import parse_line
from .agreement import cohen_kappa, fleiss_kappa, item_agreement, label_counts
from .database import database_url, open_engine, read_transaction, write_transaction
from .importer import KINDS, ImportReport, Staged, Stager
from .migrations import current_revision, migrate
from .priority import INSERTION, STRATEGIES
from .tables import claims, history, items, labels, predictions, queue_items, queues

log = logging.getLogger(__name__)

LEASE_SECONDS = 2 * 60  # an item on an open page is renewed well within this (the Annotate tab: every 30 s)
MAX_CONTEXT_TURNS = 20  # dialogue turns kept before a turn: each turn stores its own context
MAX_DIALOGUE_TURNS = 200  # turns one sent dialogue may become
MAX_INSTRUCTIONS = 20_000  # characters of a queue's instructions
INSERT_BATCH = 500  # staged items placed per set of statements: bounds each IN list
SENT_QUEUE = "sent"  # where the other tabs' "send to annotation" buttons put items


@dataclass(frozen=True)
class Item:
    id: int
    queue: str
    modality: str
    sha256: str
    media: Path | None  # None for text
    text: str | None
    original_name: str | None
    source: str
    context: tuple[str, ...] = ()  # the dialogue turns before a text item

    @property
    def input(self) -> str:
        """What classify() and the exports take: the text, or the stored media file."""
        return self.text if self.modality == "text" else str(self.media)


@dataclass(frozen=True)
class Vote:
    annotator: str
    label: str | None  # None: skipped
    unsure: bool


@dataclass(frozen=True)
class Progress:
    total: int
    complete: int  # items with the required number of labels
    required: int
    labelled_by_me: int
    skipped_by_me: int
    left_for_me: int


def _annotator_name(name) -> str:
    name = str(name or "").strip()
    if not name:
        raise InputError("annotator name is empty")
    return name


def _queue_name(name) -> str:
    name = str(name or "").strip()
    if not name:
        raise InputError("queue name is empty")
    if len(name) > 100:
        raise InputError(f"queue name is {len(name)} characters long; the limit is 100")
    return name


def _history_row(action: str, queue=None, item_id=None, annotator=None, **detail) -> dict:
    return {"at": time.time(), "action": action, "queue": queue, "item_id": item_id, "annotator": annotator,
            "detail": json.dumps(detail) if detail else None}


def _current(table) -> ColumnElement[bool]:
    """The current answers (labels and skips) for ``table``'s queue and item."""
    return and_(labels.c.queue == table.c.queue, labels.c.item_id == table.c.item_id, labels.c.superseded_at.is_(None))


def _count_where(condition) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


class AnnotationStore:
    """The annotation database and media folder under ``root`` (default: the app's data
    folder). The database is ``url``, else ``DATABASE_URL``, else an SQLite file in ``root``."""

    def __init__(self, root: Path | str | None = None, url: str | None = None):
        self.root = Path(root) if root else data_dir()
        self.stager = Stager(self.root, self._known_media)
        self.media_dir = self.stager.media_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = open_engine(url or database_url(self.root))
        with self.transaction() as conn:  # concurrent openers queue here: one migrates, the rest find it done
            migrate(conn)

    # --- transactions ------------------------------------------------------------------

    def transaction(self):
        """A write transaction holding the database's write lock: everything commits or nothing."""
        return write_transaction(self.engine)

    def _snapshot(self):
        """A read transaction: several queries see one consistent state."""
        return read_transaction(self.engine)

    def schema_version(self) -> str:
        """The database's migration revision (the newest, ``migrations.head()``, once opened)."""
        with self._snapshot() as conn:
            return current_revision(conn)

    @staticmethod
    def _log(conn, action: str, queue=None, item_id=None, annotator=None, **detail) -> None:
        conn.execute(insert(history).values(_history_row(action, queue, item_id, annotator, **detail)))

    # --- queues ------------------------------------------------------------------------

    def _ensure_queue(self, conn, queue: str) -> None:
        if conn.scalar(select(queues.c.name).where(queues.c.name == queue)) is None:
            conn.execute(insert(queues).values(name=queue, created_at=time.time()))
            self._log(conn, "create_queue", queue)

    def queue_names(self) -> list[str]:
        with self._snapshot() as conn:
            return list(conn.scalars(select(queues.c.name).order_by(queues.c.created_at)))

    def required_labels(self, queue: str) -> int:
        with self._snapshot() as conn:
            k = conn.scalar(select(queues.c.required_labels).where(queues.c.name == queue))
        if k is None:
            raise KeyError(f"no queue named {queue!r}")
        return k

    def instructions(self, queue: str) -> str:
        """The queue's instructions for annotators (Markdown typed by an admin; "" when none)."""
        with self._snapshot() as conn:
            return conn.scalar(select(queues.c.instructions).where(queues.c.name == queue)) or ""

    def set_instructions(self, queue: str, text: str) -> None:
        queue, text = _queue_name(queue), str(text or "").strip()
        if len(text) > MAX_INSTRUCTIONS:
            raise InputError(f"instructions are {len(text)} characters; the limit is {MAX_INSTRUCTIONS}")
        with self.transaction() as conn:
            self._ensure_queue(conn, queue)
            conn.execute(update(queues).where(queues.c.name == queue).values(instructions=text or None))
            self._log(conn, "set_instructions", queue, characters=len(text))

    def strategy(self, queue: str) -> str:
        """The order the queue is served in (``priority.STRATEGIES``)."""
        with self._snapshot() as conn:
            return conn.scalar(select(queues.c.strategy).where(queues.c.name == queue)) or INSERTION

    def set_strategy(self, queue: str, strategy: str) -> None:
        """Serve the queue in ``strategy``'s order from now on; its priorities are (re)computed
        by ``rescoring`` (until then, items keep the order they had)."""
        queue = _queue_name(queue)
        if strategy not in STRATEGIES:
            raise InputError(f"unknown order {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        with self.transaction() as conn:
            self._ensure_queue(conn, queue)
            conn.execute(update(queues).where(queues.c.name == queue).values(strategy=strategy))
            self._log(conn, "set_strategy", queue, strategy=strategy)

    def set_required_labels(self, queue: str, k: int) -> None:
        """How many labels each item of the queue needs (k); raising it reopens finished items."""
        queue, k = _queue_name(queue), int(k)
        if k < 1:
            raise ValueError(f"an item needs at least one label, not {k}")
        with self.transaction() as conn:
            self._ensure_queue(conn, queue)
            conn.execute(update(queues).where(queues.c.name == queue).values(required_labels=k))
            self._log(conn, "set_required_labels", queue, k=k)

    # --- adding items ------------------------------------------------------------------

    def import_paths(self, queue: str, paths, source: str = "upload") -> ImportReport:
        """Add files, zips, folders (recursively), .txt files (one text per line) and .csv
        manifests (a ``text`` column, or a ``path`` column relative to the CSV) to a queue.
        A bad input is reported in the result and the rest are still imported."""
        queue = _queue_name(queue)
        report = ImportReport()
        staged = self.stager.paths(paths, report)
        with self.transaction() as conn:
            self._ensure_queue(conn, queue)
            for item_id, added in self._insert(conn, queue, staged, source):
                if added:
                    report.added.append(item_id)
                else:
                    report.duplicates += 1
        return report

    def add_item_from_prediction(self, modality: str, media_or_text, prediction: dict | None = None,
                                 queue: str = SENT_QUEUE) -> int:
        """``add_sent``'s first item: what a caller sending one thing refers to."""
        return self.add_sent(modality, media_or_text, prediction, queue)[0]

    def add_sent(self, modality: str, media_or_text, prediction: dict | None = None, queue: str = SENT_QUEUE,
                 dialogue: bool = False) -> list[int]:
        """Put what another tab just classified in a queue, with the prediction it showed;
        returns the item ids. ``media_or_text`` is the text, a file path, or (image) an
        array / PIL image. A photo of faces is one item per face (``add_photo``), a dialogue
        one item per turn (``add_dialogue``)."""
        if modality == "text":
            if dialogue:
                return self.add_dialogue(media_or_text, queue)
            return self._add_staged(queue, [self.stager.text(media_or_text)], [prediction])
        if modality not in KINDS:
            raise ValueError(f"cannot annotate modality {modality!r}; expected text, {', '.join(KINDS)}")
        if media_or_text is None or (isinstance(media_or_text, str) and not media_or_text.strip()):
            raise InputError(f"no {modality} given: add one first")
        if modality == "image":
            return self.add_photo(media_or_text, prediction, queue)
        return self._add_staged(queue, [self.stager.file(Path(media_or_text), modality)], [prediction])

    def add_photo(self, image, prediction: dict | None = None, queue: str = SENT_QUEUE) -> list[int]:
        """A photo as annotation items: one per face found (its crop, as the image model reads
        it, named after the photo and the face's number as the Image tab shows it), each with
        that face's prediction; a photo that is one face already, or shows none, is one item
        with ``prediction``. Returns the item ids in face order."""
        named = isinstance(image, (str, Path))
        rgb = load_image(image) if named else as_rgb(np.asarray(image))
        faces = detect_faces(rgb)
        if is_ready_crop(rgb, faces):
            staged = self.stager.file(Path(image), "image") if named else self.stager.picture(rgb)
            return self._add_staged(queue, [staged], [prediction])
        photo = Path(image).name if named else "photo"
        staged = [self.stager.picture(face.crop, f"{photo} · face {n}") for n, face in enumerate(faces, 1)]
        return self._add_staged(queue, staged, self._predicted_crops([face.crop for face in faces]))

    @staticmethod
    def _predicted_crops(crops: list) -> list[dict | None]:
        """The active image model's reading of each face crop; none when it cannot run
        (the items are still queued, and predicted when shown)."""
        try:
            probs = classify_crops(crops)
            model = resolve("image", None).entry.ref
        except Exception:  # noqa: BLE001 - any model failure must leave sending usable
            log.exception("face crops sent to annotation without a prediction")
            return [None] * len(crops)
        return [{**label_probs(p), "model": model} for p in probs]

    def add_dialogue(self, text: str, queue: str = SENT_QUEUE) -> list[int]:
        """A dialogue (one "Speaker: utterance" per line) as one item per turn, each carrying
        the turns before it (up to ``MAX_CONTEXT_TURNS``) as its context and the dialogue
        model's reading of it in that context. Returns the item ids in turn order."""
        lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
        if not lines:
            raise InputError("empty dialogue: nothing to annotate")
        if len(lines) > MAX_DIALOGUE_TURNS:
            raise InputError(f"the dialogue has {len(lines)} turns; at most {MAX_DIALOGUE_TURNS} are sent at once")
        staged = []
        for n, line in enumerate(lines, 1):
            speaker, utterance = parse_line(line)
            staged.append(self.stager.text(utterance, f"turn {n}" + (f" · {speaker}" if speaker else ""),
                                           tuple(lines[max(0, n - 1 - MAX_CONTEXT_TURNS):n - 1])))
        try:
            results = classify("text", lines, dialogue=True)
        except Exception:  # noqa: BLE001 - a missing dialogue model leaves the turns to be predicted when shown
            log.exception("dialogue sent to annotation without predictions")
            results = [None] * len(lines)
        return self._add_staged(queue, staged, results)

    def _add_staged(self, queue: str, staged: list[Staged], results: list[dict | None]) -> list[int]:
        """Queue sent items with their predictions (a result without probabilities, e.g. an
        error, stores none); returns their ids."""
        queue = _queue_name(queue)
        with self.transaction() as conn:
            self._ensure_queue(conn, queue)
            placed = self._insert(conn, queue, staged, "sent")
            for (item_id, _), result in zip(placed, results):
                if result and "probs" in result and "model" in result:
                    self._store_prediction(conn, item_id, result)
        return [item_id for item_id, _ in placed]

    def _known_media(self, sha256: str) -> str | None:
        with self._snapshot() as conn:
            return conn.scalar(select(items.c.media).where(items.c.sha256 == sha256))

    def _insert(self, conn, queue: str, staged: list[Staged], source: str) -> list[tuple[int, bool]]:
        """Put staged items in a queue in their order: (item id, whether it is new to the queue)
        for each. A few statements per batch rather than per item: imports are thousands."""
        placed = []
        for start in range(0, len(staged), INSERT_BATCH):
            batch = staged[start:start + INSERT_BATCH]
            ids = dict(conn.execute(select(items.c.sha256, items.c.id)
                                    .where(items.c.sha256.in_({s.sha256 for s in batch}))).all())
            new = {}
            for s in batch:
                if s.sha256 not in ids:
                    new.setdefault(s.sha256, s)
            if new:
                conn.execute(insert(items), [
                    {"sha256": s.sha256, "modality": s.modality, "media": s.media, "text": s.text,
                     "original_name": s.original_name, "created_at": time.time(),
                     "context": json.dumps(s.context) if s.context else None} for s in new.values()])
                ids.update(conn.execute(select(items.c.sha256, items.c.id).where(items.c.sha256.in_(new))).all())
            queued = set(conn.scalars(select(queue_items.c.item_id).where(
                queue_items.c.queue == queue, queue_items.c.item_id.in_(set(ids.values())))))
            position = conn.scalar(select(func.coalesce(func.max(queue_items.c.position), 0))
                                   .where(queue_items.c.queue == queue))
            rows, logs = [], []
            for s in batch:
                item_id = ids[s.sha256]
                added = item_id not in queued
                if added:
                    queued.add(item_id)
                    rows.append({"queue": queue, "item_id": item_id, "source": source, "added_at": time.time(),
                                 "position": position + len(rows) + 1})
                    logs.append(_history_row("add_item", queue, item_id, source=source, name=s.original_name))
                placed.append((item_id, added))
            if rows:
                conn.execute(insert(queue_items), rows)
                conn.execute(insert(history), logs)
        return placed

    # --- predictions -------------------------------------------------------------------

    def _store_prediction(self, conn, item_id: int, result: dict) -> None:
        probs = {label: float(result["probs"][label]) for label in LABELS}
        label = result.get("label") or max(probs, key=probs.get)
        stored = select(exists().where(predictions.c.item_id == item_id, predictions.c.model == result["model"]))
        if not conn.scalar(stored):
            conn.execute(insert(predictions).values(item_id=item_id, model=result["model"], label=label,
                                                    probs=json.dumps(probs), created_at=time.time()))
            self._log(conn, "prediction", item_id=item_id, model=result["model"], label=label)

    def stored_prediction(self, item_id: int) -> dict | None:
        with self._snapshot() as conn:
            row = conn.execute(select(predictions.c.model, predictions.c.label, predictions.c.probs)
                               .where(predictions.c.item_id == item_id).order_by(predictions.c.id.desc()).limit(1)
                               ).first()
        return {"model": row.model, "label": row.label, "probs": json.loads(row.probs)} if row else None

    def prediction(self, item: Item) -> dict | str:
        """The item's stored prediction, else the active model's, computed now and stored.
        A string instead says why there is none (no model for the modality, or it failed)."""
        stored = self.stored_prediction(item.id)
        if stored:
            return stored
        try:
            result = classify(item.modality, [item.input])[0]
        except Exception as exc:  # any model failure (missing weights, a module not built yet) must leave annotation usable
            return f"No prediction: the {item.modality} model is not available ({exc})."
        if "error" in result:
            return f"No prediction: {result['error']}"
        with self.transaction() as conn:
            self._store_prediction(conn, item.id, result)
        return result

    # --- the annotation loop -----------------------------------------------------------

    def item(self, queue: str, item_id: int) -> Item:
        with self._snapshot() as conn:
            row = conn.execute(select(items, queue_items.c.source)
                               .join(queue_items, items.c.id == queue_items.c.item_id)
                               .where(queue_items.c.queue == queue, queue_items.c.item_id == item_id)).first()
        if row is None:
            raise KeyError(f"item {item_id} is not in queue {queue!r}")
        return self._item_from_row(queue, row)

    def _item_from_row(self, queue: str, row) -> Item:
        return Item(id=row.id, queue=queue, modality=row.modality, sha256=row.sha256,
                    media=self.root / row.media if row.media else None, text=row.text,
                    original_name=row.original_name, source=row.source,
                    context=tuple(json.loads(row.context)) if row.context else ())

    def next_item(self, queue: str, annotator: str, lease: float = LEASE_SECONDS) -> Item | None:
        """The item this annotator should label now, claimed for ``lease`` seconds; None when
        nothing is left for them. An item they already hold comes first (e.g. after a reload)."""
        annotator = _annotator_name(annotator)
        now = time.time()
        with self.transaction() as conn:
            settings = conn.execute(select(queues.c.required_labels, queues.c.strategy)
                                    .where(queues.c.name == queue)).first()
            if settings is None:
                return None
            k = settings.required_labels
            order = [queue_items.c.position]
            if (settings.strategy or INSERTION) != INSERTION:  # scored first, highest first
                order = [case((queue_items.c.priority.is_(None), 1), else_=0), queue_items.c.priority.desc(), *order]
            held = conn.scalar(
                select(claims.c.item_id)
                .where(claims.c.queue == queue, claims.c.annotator == annotator, claims.c.expires_at > now,
                       ~exists().where(_current(claims), labels.c.annotator == claims.c.annotator))
                .order_by(claims.c.expires_at.desc()).limit(1))
            labelled = select(func.count()).where(_current(queue_items), labels.c.label.is_not(None)).scalar_subquery()
            item_id = held or conn.scalar(
                select(queue_items.c.item_id)
                .where(queue_items.c.queue == queue, labelled < k,
                       ~exists().where(_current(queue_items), labels.c.annotator == annotator),
                       ~exists().where(claims.c.queue == queue_items.c.queue, claims.c.item_id == queue_items.c.item_id,
                                       claims.c.expires_at > now))
                .order_by(*order).limit(1))
            if item_id is None:
                return None
            self._claim(conn, queue, item_id, annotator, now + lease, now)
        return self.item(queue, item_id)

    @staticmethod
    def _claim(conn, queue: str, item_id: int, annotator: str, expires_at: float, now: float) -> None:
        """Hold an item, unless someone else holds it with a lease that has not expired."""
        key = and_(claims.c.queue == queue, claims.c.item_id == item_id)
        holder = conn.execute(select(claims.c.annotator, claims.c.expires_at).where(key)).first()
        if holder is None:
            conn.execute(insert(claims).values(queue=queue, item_id=item_id, annotator=annotator,
                                               expires_at=expires_at))
        elif holder.expires_at <= now or holder.annotator == annotator:
            conn.execute(update(claims).where(key).values(annotator=annotator, expires_at=expires_at))

    def renew(self, queue: str, item_id: int, annotator: str, lease: float = LEASE_SECONDS) -> bool:
        """Extend the annotator's hold on the item on their screen (the page's heartbeat);
        False when someone else holds it now (their lease ran out and it was given away)."""
        annotator, now = _annotator_name(annotator), time.time()
        with self.transaction() as conn:
            self._claim(conn, queue, item_id, annotator, now + lease, now)
            holder = conn.scalar(select(claims.c.annotator).where(claims.c.queue == queue,
                                                                   claims.c.item_id == item_id))
        return holder == annotator

    def release(self, annotator: str, queue: str | None = None) -> int:
        """Give back the items the annotator holds (in ``queue``, or everywhere): they left
        the queue or closed the page. Returns how many were released."""
        annotator = _annotator_name(annotator)
        mine = claims.c.annotator == annotator
        with self.transaction() as conn:
            released = conn.execute(claims.delete().where(mine if queue is None else and_(mine, claims.c.queue == queue)))
        return released.rowcount

    def submit(self, queue: str, item_id: int, annotator: str, label: str | None, unsure: bool = False,
               token: str | None = None) -> int:
        """Store an annotator's answer (a label, or None to skip) and return its row id.

        It replaces their earlier answer for the item (which stays, marked superseded). A
        submit repeated with the same ``token`` is stored once and returns the first id."""
        annotator = _annotator_name(annotator)
        if label is not None and label not in LABELS:
            raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
        token = token or uuid.uuid4().hex
        with self.transaction() as conn:
            done = conn.scalar(select(labels.c.id).where(labels.c.token == token))
            if done is not None:
                return done
            in_queue = exists().where(queue_items.c.queue == queue, queue_items.c.item_id == item_id)
            if not conn.scalar(select(in_queue)):
                raise KeyError(f"item {item_id} is not in queue {queue!r}")
            now = time.time()
            previous = conn.scalar(select(labels.c.id).where(
                labels.c.queue == queue, labels.c.item_id == item_id, labels.c.annotator == annotator,
                labels.c.superseded_at.is_(None)))
            if previous is not None:
                conn.execute(update(labels).where(labels.c.id == previous).values(superseded_at=now))
            label_id = conn.execute(insert(labels).values(
                queue=queue, item_id=item_id, annotator=annotator, label=label, unsure=int(bool(unsure)), token=token,
                created_at=now)).inserted_primary_key[0]
            if previous is not None:
                conn.execute(update(labels).where(labels.c.id == previous).values(superseded_by=label_id))
            conn.execute(claims.delete().where(claims.c.queue == queue, claims.c.item_id == item_id,
                                               claims.c.annotator == annotator))
            self._log(conn, "skip" if label is None else "label", queue, item_id, annotator, label=label,
                      unsure=bool(unsure), label_id=label_id, replaces=previous)
        return label_id

    def undo(self, queue: str, annotator: str, lease: float = LEASE_SECONDS) -> int | None:
        """Withdraw the annotator's latest answer in the queue; returns its item id, or None
        when there is nothing to undo.

        If that answer had replaced an earlier one, the earlier one is current again (so
        repeated undos walk back through every change); otherwise the item is held for the
        annotator again. Rows are kept; ``history`` records the undo."""
        now = time.time()
        with self.transaction() as conn:
            last = conn.execute(select(labels.c.id, labels.c.item_id).where(
                labels.c.queue == queue, labels.c.annotator == annotator, labels.c.superseded_at.is_(None))
                .order_by(labels.c.id.desc()).limit(1)).first()
            if last is None:
                return None
            conn.execute(update(labels).where(labels.c.id == last.id).values(superseded_at=now))
            earlier = conn.scalar(select(labels.c.id).where(labels.c.superseded_by == last.id))
            if earlier is not None:
                conn.execute(update(labels).where(labels.c.id == earlier)
                             .values(superseded_at=None, superseded_by=None))
            else:
                self._claim(conn, queue, last.item_id, annotator, now + lease, now)
            self._log(conn, "undo", queue, last.item_id, annotator, withdrawn=last.id, restored=earlier)
        return last.item_id

    def answer(self, queue: str, item_id: int, annotator: str) -> Vote | None:
        """The annotator's current answer for an item, if any."""
        with self._snapshot() as conn:
            row = conn.execute(select(labels.c.annotator, labels.c.label, labels.c.unsure).where(
                labels.c.queue == queue, labels.c.item_id == item_id, labels.c.annotator == annotator,
                labels.c.superseded_at.is_(None))).first()
        return Vote(row.annotator, row.label, bool(row.unsure)) if row else None

    def answered_items(self, queue: str, annotator: str) -> list[int]:
        """Items the annotator has a current answer for, in the order they first answered them
        (what "back" walks through)."""
        with self._snapshot() as conn:
            return list(conn.scalars(
                select(labels.c.item_id).where(labels.c.queue == queue, labels.c.annotator == annotator)
                .group_by(labels.c.item_id).having(_count_where(labels.c.superseded_at.is_(None)) > 0)
                .order_by(func.min(labels.c.id))))

    def votes(self, queue: str, item_id: int) -> list[Vote]:
        """Current labels of an item (skips are not votes)."""
        with self._snapshot() as conn:
            return [Vote(r.annotator, r.label, bool(r.unsure)) for r in conn.execute(
                select(labels.c.annotator, labels.c.label, labels.c.unsure).where(
                    labels.c.queue == queue, labels.c.item_id == item_id, labels.c.superseded_at.is_(None),
                    labels.c.label.is_not(None)).order_by(labels.c.id))]

    def progress(self, queue: str, annotator: str = "") -> Progress:
        with self._snapshot() as conn:
            k = conn.scalar(select(queues.c.required_labels).where(queues.c.name == queue))
            if k is None:
                return Progress(0, 0, 1, 0, 0, 0)
            per_item = select(
                select(func.count()).where(_current(queue_items), labels.c.label.is_not(None))
                .scalar_subquery().label("n"),
                # 1: skipped, 0: labelled, NULL: no answer from this annotator
                select(case((labels.c.label.is_(None), 1), else_=0))
                .where(_current(queue_items), labels.c.annotator == annotator).scalar_subquery().label("skipped"),
            ).where(queue_items.c.queue == queue).subquery()
            n, skipped = per_item.c.n, per_item.c.skipped
            row = conn.execute(select(func.count(), _count_where(n >= k), _count_where(skipped == 0),
                                      _count_where(skipped == 1), _count_where(and_(n < k, skipped.is_(None))))).one()
        return Progress(row[0], int(row[1]), k, int(row[2]), int(row[3]), int(row[4]))

    # --- scoring (the queue's order) ----------------------------------------------------

    def _remaining(self, queue: str):
        """Queued items that still need labels and have not been found unscorable."""
        k = select(queues.c.required_labels).where(queues.c.name == queue).scalar_subquery()
        labelled = select(func.count()).where(_current(queue_items), labels.c.label.is_not(None)).scalar_subquery()
        return and_(queue_items.c.queue == queue, labelled < k, queue_items.c.score_error.is_(None))

    def to_score(self, queue: str) -> list[tuple[Item, str | None]]:
        """The items whose priority the queue's order needs, in queue order, with the model
        their priority rests on (None: not scored yet)."""
        with self._snapshot() as conn:
            rows = conn.execute(select(items, queue_items.c.source, queue_items.c.scored_by)
                                .join(queue_items, items.c.id == queue_items.c.item_id)
                                .where(self._remaining(queue)).order_by(queue_items.c.position)).all()
        return [(self._item_from_row(queue, r), r.scored_by) for r in rows]

    def store_predictions(self, results: list[tuple[int, dict]]) -> None:
        """Predictions made for many items at once (re-scoring), in one transaction."""
        with self.transaction() as conn:
            for item_id, result in results:
                self._store_prediction(conn, item_id, result)

    def latest_predictions(self, item_ids: list[int]) -> dict[int, dict]:
        """Each item's newest stored prediction."""
        found = {}
        with self._snapshot() as conn:
            for start in range(0, len(item_ids), INSERT_BATCH):
                ids = item_ids[start:start + INSERT_BATCH]
                newest = (select(func.max(predictions.c.id)).where(predictions.c.item_id.in_(ids))
                          .group_by(predictions.c.item_id))
                for r in conn.execute(select(predictions).where(predictions.c.id.in_(newest))):
                    found[r.item_id] = {"model": r.model, "label": r.label, "probs": json.loads(r.probs)}
        return found

    def all_predictions(self, item_ids: list[int]) -> list[dict]:
        """Every stored prediction of the items, oldest first (which model each label saw)."""
        found = []
        with self._snapshot() as conn:
            for start in range(0, len(item_ids), INSERT_BATCH):
                found += [{"item_id": r.item_id, "model": r.model, "label": r.label, "at": r.created_at}
                          for r in conn.execute(select(predictions).where(
                              predictions.c.item_id.in_(item_ids[start:start + INSERT_BATCH])))]
        return sorted(found, key=lambda p: p["at"])

    def current_labels(self, queue: str) -> list[dict]:
        """The queue's current labels (not skips) with when they were given, oldest first."""
        with self._snapshot() as conn:
            return [{"item_id": r.item_id, "annotator": r.annotator, "label": r.label, "at": r.created_at}
                    for r in conn.execute(select(labels).where(
                        labels.c.queue == queue, labels.c.superseded_at.is_(None), labels.c.label.is_not(None))
                        .order_by(labels.c.id))]

    def current_votes(self, queue: str) -> dict[int, list[str]]:
        """Every item's current labels (for the disagreement order)."""
        votes: dict[int, list[str]] = defaultdict(list)
        for row in self.current_labels(queue):
            votes[row["item_id"]].append(row["label"])
        return votes

    def set_priorities(self, queue: str, scored: dict[int, tuple[float, str]]) -> None:
        """Write ``{item_id: (priority, model ref)}``."""
        with self.transaction() as conn:
            for item_id, (value, model) in scored.items():
                conn.execute(update(queue_items).where(queue_items.c.queue == queue, queue_items.c.item_id == item_id)
                             .values(priority=float(value), scored_by=model))

    def flag_unscorable(self, queue: str, item_id: int, reason: str) -> None:
        """An item its model cannot read (corrupt media): served last, never re-scored."""
        with self.transaction() as conn:
            conn.execute(update(queue_items).where(queue_items.c.queue == queue, queue_items.c.item_id == item_id)
                         .values(score_error=reason[:500], priority=None))
            self._log(conn, "unscorable", queue, item_id, reason=reason[:500])

    def unscorable(self, queue: str) -> dict[int, str]:
        with self._snapshot() as conn:
            return dict(conn.execute(select(queue_items.c.item_id, queue_items.c.score_error).where(
                queue_items.c.queue == queue, queue_items.c.score_error.is_not(None))).all())

    def history(self, queue: str | None = None) -> list[dict]:
        query = select(history).order_by(history.c.id)
        if queue is not None:
            query = query.where(history.c.queue == queue)
        with self._snapshot() as conn:
            return [{**r._asdict(), "detail": json.loads(r.detail) if r.detail else {}} for r in conn.execute(query)]

    # --- results -----------------------------------------------------------------------

    def labelled_items(self, queue: str) -> list[tuple[Item, list[Vote]]]:
        """Every item with at least one current label, in queue order, with its votes."""
        with self._snapshot() as conn:
            rows = conn.execute(
                select(items, queue_items.c.source, labels.c.annotator, labels.c.label, labels.c.unsure)
                .select_from(queue_items.join(items, items.c.id == queue_items.c.item_id)
                             .join(labels, _current(queue_items)))
                .where(queue_items.c.queue == queue, labels.c.label.is_not(None))
                .order_by(queue_items.c.position, labels.c.id)).all()
        labelled: dict[int, tuple[Item, list[Vote]]] = {}
        for r in rows:
            entry = labelled.setdefault(r.id, (self._item_from_row(queue, r), []))
            entry[1].append(Vote(r.annotator, r.label, bool(r.unsure)))
        return list(labelled.values())

    def agreed_items(self, queue: str) -> list[tuple[Item, str]]:
        """Items with the required number of labels and a strict majority (> half) for one label."""
        k = self.required_labels(queue)
        agreed = []
        for item, votes in self.labelled_items(queue):
            majority, share = item_agreement([v.label for v in votes])
            if len(votes) >= k and majority and share > 0.5:
                agreed.append((item, majority))
        return agreed

    def agreed_labels(self, queue: str) -> list[tuple[str, str]]:
        """(media path or text, label) pairs to train on: the Fine-tune tab's input."""
        return [(item.input, label) for item, label in self.agreed_items(queue)]

    def agreement(self, queue: str) -> dict:
        """Per-queue agreement: Fleiss' kappa over items with two or more labels, Cohen's
        kappa for every pair of annotators who labelled two or more items in common, and
        the mean per-item agreement."""
        labelled = [votes for _, votes in self.labelled_items(queue)]
        multi = [votes for votes in labelled if len(votes) >= 2]
        by_annotator: dict[str, dict[int, str]] = defaultdict(dict)
        for i, votes in enumerate(labelled):
            for v in votes:
                by_annotator[v.annotator][i] = v.label
        cohen = {}
        for a, b in combinations(sorted(by_annotator), 2):
            shared = sorted(by_annotator[a].keys() & by_annotator[b].keys())
            if len(shared) >= 2:
                cohen[f"{a} vs {b}"] = {"kappa": cohen_kappa([by_annotator[a][i] for i in shared],
                                                             [by_annotator[b][i] for i in shared]),
                                        "items": len(shared)}
        shares = [item_agreement([v.label for v in votes])[1] for votes in multi]
        return {"items_with_two_or_more_labels": len(multi),
                "mean_item_agreement": sum(shares) / len(shares) if shares else None,
                "fleiss_kappa": fleiss_kappa(label_counts([[v.label for v in votes] for votes in multi])),
                "cohen_kappa": cohen}



@lru_cache(maxsize=None)
def _store_at(root: Path, url: str) -> AnnotationStore:
    return AnnotationStore(root, url)


def default_store() -> AnnotationStore:
    """The store in the app's data folder (opened and migrated once per folder and database)."""
    root = data_dir().resolve()
    return _store_at(root, database_url(root))


def agreed_labels(queue: str, store: AnnotationStore | None = None) -> list[tuple[str, str]]:
    """A queue's agreed labels as (media path or text, label) pairs, for fine-tuning."""
    return (store or default_store()).agreed_labels(queue)


def add_item_from_prediction(modality: str, media_or_text, prediction: dict | None = None,
                             queue: str = SENT_QUEUE, store: AnnotationStore | None = None) -> int:
    return (store or default_store()).add_item_from_prediction(modality, media_or_text, prediction, queue)
