"""Annotation queues: durable storage of items, model predictions and human labels.

One SQLite database (WAL mode) in the data folder holds everything; media files are
stored content-addressed beside it (``media/<sha256[:2]>/<sha256>.<ext>``), so the
same file uploaded twice is one item. Durability rests on SQLite itself: every change
is one ``BEGIN IMMEDIATE`` transaction (writers queue on the lock instead of failing),
synchronous=FULL, and label rows are never deleted: a changed or undone label is marked
superseded (undoing a change makes the label it replaced current again), and every
change is also written to ``history``. A label carries the submitting client's token,
so a retried submit is stored once. Media, staged by ``annotation_import``, are written
(temp file, fsync, rename) before the row that names them commits.

Several annotators share a queue through leases: an annotator is offered an item that
needs labels, that they have not answered, and that nobody else holds; the claim
expires after ``LEASE_SECONDS`` so a closed browser gives its item back.

"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path

from ..core.errors import InputError
from ..core.labels import LABELS
from ..core.paths import data_dir
from ..pipelines import classify
from .agreement import cohen_kappa, fleiss_kappa, item_agreement, label_counts
from .importer import KINDS, ImportReport, Staged, Stager

DB_NAME = "annotations.sqlite3"
LEASE_SECONDS = 15 * 60
BUSY_SECONDS = 30
SENT_QUEUE = "sent"  # where the other tabs' "send to annotation" buttons put items

# Versioned migrations: entry i brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE queues(
            name TEXT PRIMARY KEY,
            required_labels INTEGER NOT NULL DEFAULT 1 CHECK (required_labels >= 1),
            created_at REAL NOT NULL)""",
        """CREATE TABLE items(
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            modality TEXT NOT NULL,
            media TEXT,
            text TEXT,
            original_name TEXT,
            created_at REAL NOT NULL)""",
        """CREATE TABLE queue_items(
            queue TEXT NOT NULL REFERENCES queues(name),
            item_id INTEGER NOT NULL REFERENCES items(id),
            source TEXT NOT NULL,
            added_at REAL NOT NULL,
            PRIMARY KEY (queue, item_id))""",
        """CREATE TABLE predictions(
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items(id),
            model TEXT NOT NULL,
            label TEXT NOT NULL,
            probs TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (item_id, model))""",
        """CREATE TABLE labels(
            id INTEGER PRIMARY KEY,
            queue TEXT NOT NULL,
            item_id INTEGER NOT NULL,
            annotator TEXT NOT NULL,
            label TEXT,
            unsure INTEGER NOT NULL DEFAULT 0,
            token TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            superseded_by INTEGER REFERENCES labels(id),
            superseded_at REAL,
            FOREIGN KEY (queue, item_id) REFERENCES queue_items(queue, item_id))""",
        # At most one current answer (label or skip) per annotator and item.
        """CREATE UNIQUE INDEX labels_current ON labels(queue, item_id, annotator)
            WHERE superseded_at IS NULL""",
        "CREATE INDEX labels_by_annotator ON labels(queue, annotator, id)",
        """CREATE TABLE claims(
            queue TEXT NOT NULL,
            item_id INTEGER NOT NULL,
            annotator TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (queue, item_id))""",
        """CREATE TABLE history(
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            action TEXT NOT NULL,
            queue TEXT,
            item_id INTEGER,
            annotator TEXT,
            detail TEXT)""",
    ),
)


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


class AnnotationStore:
    """The annotation database and media folder under ``root`` (default: the app's data folder)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else data_dir()
        self.stager = Stager(self.root, self._known_media)
        self.media_dir = self.stager.media_dir
        self.db_path = self.root / DB_NAME
        self.root.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        self._migrate()

    # --- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A fresh connection per operation: safe across Gradio's worker threads and processes."""
        conn = sqlite3.connect(self.db_path, timeout=BUSY_SECONDS, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def transaction(self):
        """A write transaction: the write lock is taken up front, everything commits or nothing."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @contextmanager
    def _snapshot(self):
        """A read transaction: several queries see one consistent state."""
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL, applied_at REAL NOT NULL)")
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise RuntimeError(f"{self.db_path}: schema version {current} is newer than this app's "
                                   f"{len(MIGRATIONS)}; update the app before opening it")
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))

    def schema_version(self) -> int:
        with self._snapshot() as conn:
            return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

    @staticmethod
    def _log(conn, action: str, queue=None, item_id=None, annotator=None, **detail) -> None:
        conn.execute("INSERT INTO history(at, action, queue, item_id, annotator, detail) VALUES (?, ?, ?, ?, ?, ?)",
                     (time.time(), action, queue, item_id, annotator, json.dumps(detail) if detail else None))

    # --- queues ------------------------------------------------------------------------

    def _ensure_queue(self, conn, queue: str) -> None:
        if conn.execute("INSERT OR IGNORE INTO queues(name, created_at) VALUES (?, ?)",
                        (queue, time.time())).rowcount:
            self._log(conn, "create_queue", queue)

    def queue_names(self) -> list[str]:
        with self._snapshot() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM queues ORDER BY created_at")]

    def required_labels(self, queue: str) -> int:
        with self._snapshot() as conn:
            row = conn.execute("SELECT required_labels FROM queues WHERE name = ?", (queue,)).fetchone()
        if row is None:
            raise KeyError(f"no queue named {queue!r}")
        return row[0]

    def set_required_labels(self, queue: str, k: int) -> None:
        """How many labels each item of the queue needs (k); raising it reopens finished items."""
        queue, k = _queue_name(queue), int(k)
        if k < 1:
            raise ValueError(f"an item needs at least one label, not {k}")
        with self.transaction() as conn:
            self._ensure_queue(conn, queue)
            conn.execute("UPDATE queues SET required_labels = ? WHERE name = ?", (k, queue))
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
            for s in staged:
                item_id, added = self._insert(conn, queue, s, source)
                if added:
                    report.added.append(item_id)
                else:
                    report.duplicates += 1
        return report

    def add_item_from_prediction(self, modality: str, media_or_text, prediction: dict | None = None,
                                 queue: str = SENT_QUEUE) -> int:
        """Put what another tab just classified in a queue, with the prediction it showed.

        ``media_or_text`` is the text, a file path, or (image) an array / PIL image."""
        if modality == "text":
            staged = self.stager.text(media_or_text)
        elif modality not in KINDS:
            raise ValueError(f"cannot annotate modality {modality!r}; expected text, {', '.join(KINDS)}")
        elif media_or_text is None or (isinstance(media_or_text, str) and not media_or_text.strip()):
            raise InputError(f"no {modality} given: add one first")
        elif modality == "image" and not isinstance(media_or_text, (str, Path)):
            staged = self.stager.picture(media_or_text)
        else:
            staged = self.stager.file(Path(media_or_text), modality)
        queue = _queue_name(queue)
        with self.transaction() as conn:
            self._ensure_queue(conn, queue)
            item_id, _ = self._insert(conn, queue, staged, "sent")
            if prediction and "probs" in prediction and "model" in prediction:
                self._store_prediction(conn, item_id, prediction)
        return item_id

    def _known_media(self, sha256: str) -> str | None:
        with self._snapshot() as conn:
            row = conn.execute("SELECT media FROM items WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None

    def _insert(self, conn, queue: str, s: Staged, source: str) -> tuple[int, bool]:
        conn.execute("INSERT OR IGNORE INTO items(sha256, modality, media, text, original_name, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (s.sha256, s.modality, s.media, s.text, s.original_name, time.time()))
        item_id = conn.execute("SELECT id FROM items WHERE sha256 = ?", (s.sha256,)).fetchone()[0]
        added = conn.execute("INSERT OR IGNORE INTO queue_items(queue, item_id, source, added_at) VALUES (?, ?, ?, ?)",
                             (queue, item_id, source, time.time())).rowcount > 0
        if added:
            self._log(conn, "add_item", queue, item_id, source=source, name=s.original_name)
        return item_id, added

    # --- predictions -------------------------------------------------------------------

    def _store_prediction(self, conn, item_id: int, result: dict) -> None:
        probs = {label: float(result["probs"][label]) for label in LABELS}
        label = result.get("label") or max(probs, key=probs.get)
        if conn.execute("INSERT OR IGNORE INTO predictions(item_id, model, label, probs, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (item_id, result["model"], label, json.dumps(probs), time.time())).rowcount:
            self._log(conn, "prediction", item_id=item_id, model=result["model"], label=label)

    def stored_prediction(self, item_id: int) -> dict | None:
        with self._snapshot() as conn:
            row = conn.execute("SELECT model, label, probs FROM predictions WHERE item_id = ? ORDER BY id DESC LIMIT 1",
                               (item_id,)).fetchone()
        return {"model": row["model"], "label": row["label"], "probs": json.loads(row["probs"])} if row else None

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
            row = conn.execute("SELECT i.*, qi.source FROM queue_items qi JOIN items i ON i.id = qi.item_id "
                               "WHERE qi.queue = ? AND qi.item_id = ?", (queue, item_id)).fetchone()
        if row is None:
            raise KeyError(f"item {item_id} is not in queue {queue!r}")
        return self._item_from_row(queue, row)

    def _item_from_row(self, queue: str, row) -> Item:
        return Item(id=row["id"], queue=queue, modality=row["modality"], sha256=row["sha256"],
                    media=self.root / row["media"] if row["media"] else None, text=row["text"],
                    original_name=row["original_name"], source=row["source"])

    def next_item(self, queue: str, annotator: str, lease: float = LEASE_SECONDS) -> Item | None:
        """The item this annotator should label now, claimed for ``lease`` seconds; None when
        nothing is left for them. An item they already hold comes first (e.g. after a reload)."""
        annotator = _annotator_name(annotator)
        now = time.time()
        with self.transaction() as conn:
            k = conn.execute("SELECT required_labels FROM queues WHERE name = ?", (queue,)).fetchone()
            if k is None:
                return None
            held = conn.execute(
                "SELECT c.item_id FROM claims c WHERE c.queue = ? AND c.annotator = ? AND c.expires_at > ? "
                "AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.queue = c.queue AND l.item_id = c.item_id "
                "AND l.annotator = c.annotator AND l.superseded_at IS NULL) ORDER BY c.expires_at DESC LIMIT 1",
                (queue, annotator, now)).fetchone()
            row = held or conn.execute(
                "SELECT qi.item_id FROM queue_items qi WHERE qi.queue = :q "
                "AND (SELECT COUNT(*) FROM labels l WHERE l.queue = qi.queue AND l.item_id = qi.item_id "
                "     AND l.superseded_at IS NULL AND l.label IS NOT NULL) < :k "
                "AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.queue = qi.queue AND l.item_id = qi.item_id "
                "     AND l.annotator = :a AND l.superseded_at IS NULL) "
                "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.queue = qi.queue AND c.item_id = qi.item_id "
                "     AND c.expires_at > :now) "
                "ORDER BY qi.rowid LIMIT 1", {"q": queue, "k": k[0], "a": annotator, "now": now}).fetchone()
            if row is None:
                return None
            self._claim(conn, queue, row[0], annotator, now + lease, now)
        return self.item(queue, row[0])

    @staticmethod
    def _claim(conn, queue: str, item_id: int, annotator: str, expires_at: float, now: float) -> None:
        """Hold an item, unless someone else holds it with a lease that has not expired."""
        conn.execute("INSERT INTO claims(queue, item_id, annotator, expires_at) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (queue, item_id) DO UPDATE SET annotator = excluded.annotator, "
                     "expires_at = excluded.expires_at WHERE claims.expires_at <= ? OR claims.annotator = excluded.annotator",
                     (queue, item_id, annotator, expires_at, now))

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
            done = conn.execute("SELECT id FROM labels WHERE token = ?", (token,)).fetchone()
            if done:
                return done[0]
            if not conn.execute("SELECT 1 FROM queue_items WHERE queue = ? AND item_id = ?", (queue, item_id)).fetchone():
                raise KeyError(f"item {item_id} is not in queue {queue!r}")
            now = time.time()
            previous = conn.execute("SELECT id FROM labels WHERE queue = ? AND item_id = ? AND annotator = ? "
                                    "AND superseded_at IS NULL", (queue, item_id, annotator)).fetchone()
            if previous:
                conn.execute("UPDATE labels SET superseded_at = ? WHERE id = ?", (now, previous[0]))
            label_id = conn.execute(
                "INSERT INTO labels(queue, item_id, annotator, label, unsure, token, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (queue, item_id, annotator, label, int(bool(unsure)), token, now)).lastrowid
            if previous:
                conn.execute("UPDATE labels SET superseded_by = ? WHERE id = ?", (label_id, previous[0]))
            conn.execute("DELETE FROM claims WHERE queue = ? AND item_id = ? AND annotator = ?", (queue, item_id, annotator))
            self._log(conn, "skip" if label is None else "label", queue, item_id, annotator, label=label,
                      unsure=bool(unsure), label_id=label_id, replaces=previous[0] if previous else None)
        return label_id

    def undo(self, queue: str, annotator: str, lease: float = LEASE_SECONDS) -> int | None:
        """Withdraw the annotator's latest answer in the queue; returns its item id, or None
        when there is nothing to undo.

        If that answer had replaced an earlier one, the earlier one is current again (so
        repeated undos walk back through every change); otherwise the item is held for the
        annotator again. Rows are kept; ``history`` records the undo."""
        now = time.time()
        with self.transaction() as conn:
            last = conn.execute("SELECT id, item_id FROM labels WHERE queue = ? AND annotator = ? "
                                "AND superseded_at IS NULL ORDER BY id DESC LIMIT 1", (queue, annotator)).fetchone()
            if last is None:
                return None
            conn.execute("UPDATE labels SET superseded_at = ? WHERE id = ?", (now, last["id"]))
            earlier = conn.execute("SELECT id FROM labels WHERE superseded_by = ?", (last["id"],)).fetchone()
            if earlier:
                conn.execute("UPDATE labels SET superseded_at = NULL, superseded_by = NULL WHERE id = ?", (earlier[0],))
            else:
                self._claim(conn, queue, last["item_id"], annotator, now + lease, now)
            self._log(conn, "undo", queue, last["item_id"], annotator, withdrawn=last["id"],
                      restored=earlier[0] if earlier else None)
        return last["item_id"]

    def answer(self, queue: str, item_id: int, annotator: str) -> Vote | None:
        """The annotator's current answer for an item, if any."""
        with self._snapshot() as conn:
            row = conn.execute("SELECT annotator, label, unsure FROM labels WHERE queue = ? AND item_id = ? "
                               "AND annotator = ? AND superseded_at IS NULL", (queue, item_id, annotator)).fetchone()
        return Vote(row["annotator"], row["label"], bool(row["unsure"])) if row else None

    def answered_items(self, queue: str, annotator: str) -> list[int]:
        """Items the annotator has a current answer for, in the order they first answered them
        (what "back" walks through)."""
        with self._snapshot() as conn:
            return [r[0] for r in conn.execute(
                "SELECT item_id FROM labels WHERE queue = ? AND annotator = ? GROUP BY item_id "
                "HAVING SUM(superseded_at IS NULL) > 0 ORDER BY MIN(id)", (queue, annotator))]

    def votes(self, queue: str, item_id: int) -> list[Vote]:
        """Current labels of an item (skips are not votes)."""
        with self._snapshot() as conn:
            return [Vote(r["annotator"], r["label"], bool(r["unsure"])) for r in conn.execute(
                "SELECT annotator, label, unsure FROM labels WHERE queue = ? AND item_id = ? "
                "AND superseded_at IS NULL AND label IS NOT NULL ORDER BY id", (queue, item_id))]

    def progress(self, queue: str, annotator: str = "") -> Progress:
        with self._snapshot() as conn:
            k = conn.execute("SELECT required_labels FROM queues WHERE name = ?", (queue,)).fetchone()
            if k is None:
                return Progress(0, 0, 1, 0, 0, 0)
            row = conn.execute(
                "WITH per_item AS (SELECT "
                "  (SELECT COUNT(*) FROM labels l WHERE l.queue = qi.queue AND l.item_id = qi.item_id "
                "   AND l.superseded_at IS NULL AND l.label IS NOT NULL) AS n, "
                "  (SELECT l.label IS NULL FROM labels l WHERE l.queue = qi.queue AND l.item_id = qi.item_id "
                "   AND l.annotator = :a AND l.superseded_at IS NULL) AS skipped "
                "  FROM queue_items qi WHERE qi.queue = :q) "
                "SELECT COUNT(*), TOTAL(n >= :k), TOTAL(skipped = 0), TOTAL(skipped = 1), "
                "TOTAL(n < :k AND skipped IS NULL) FROM per_item", {"q": queue, "a": annotator, "k": k[0]}).fetchone()
        return Progress(row[0], int(row[1]), k[0], int(row[2]), int(row[3]), int(row[4]))

    def history(self, queue: str | None = None) -> list[dict]:
        with self._snapshot() as conn:
            rows = conn.execute("SELECT * FROM history WHERE ? IS NULL OR queue = ? ORDER BY id", (queue, queue))
            return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else {}} for r in rows]

    # --- results -----------------------------------------------------------------------

    def labelled_items(self, queue: str) -> list[tuple[Item, list[Vote]]]:
        """Every item with at least one current label, in queue order, with its votes."""
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT i.*, qi.source, l.annotator, l.label, l.unsure FROM queue_items qi "
                "JOIN items i ON i.id = qi.item_id JOIN labels l ON l.queue = qi.queue AND l.item_id = qi.item_id "
                "WHERE qi.queue = ? AND l.superseded_at IS NULL AND l.label IS NOT NULL ORDER BY qi.rowid, l.id",
                (queue,)).fetchall()
        items: dict[int, tuple[Item, list[Vote]]] = {}
        for r in rows:
            entry = items.setdefault(r["id"], (self._item_from_row(queue, r), []))
            entry[1].append(Vote(r["annotator"], r["label"], bool(r["unsure"])))
        return list(items.values())

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
def _store_at(root: Path) -> AnnotationStore:
    return AnnotationStore(root)


def default_store() -> AnnotationStore:
    """The store in the app's data folder (opened and migrated once per folder)."""
    return _store_at(data_dir().resolve())


def agreed_labels(queue: str, store: AnnotationStore | None = None) -> list[tuple[str, str]]:
    """A queue's agreed labels as (media path or text, label) pairs, for fine-tuning."""
    return (store or default_store()).agreed_labels(queue)


def add_item_from_prediction(modality: str, media_or_text, prediction: dict | None = None,
                             queue: str = SENT_QUEUE, store: AnnotationStore | None = None) -> int:
    return (store or default_store()).add_item_from_prediction(modality, media_or_text, prediction, queue)
