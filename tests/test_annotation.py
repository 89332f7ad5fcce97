import csv
import hashlib
import io
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from sqlalchemy import text

from emotion_app.annotation import AnnotationStore, database, migrations
from emotion_app.annotation import store as annotation
from emotion_app.annotation.agreement import cohen_kappa, fleiss_kappa, item_agreement, label_counts
from emotion_app.annotation.cli import main
from emotion_app.annotation.database import StoreUnavailable
from emotion_app.annotation.export import export_csv, export_queue
from emotion_app.cli import read_manifest
from emotion_app.core.labels import LABELS
from emotion_app.models.registry import set_active

from .conftest import ROOT

STORES_AT_ONCE = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request):
    """Each backend, empty: None for the default SQLite file, or a fresh PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture
def store(tmp_path, backend_url):
    opened = AnnotationStore(tmp_path / "data", backend_url)
    yield opened
    opened.engine.dispose()


def url_of(store) -> str:
    """The store's database URL, for another process to open the same store."""
    return store.engine.url.render_as_string(hide_password=False)


def sql(store, query: str, **params) -> list:
    """Rows of a raw query (none for a change), to look under the store's interface."""
    with store.engine.connect() as conn, conn.begin():
        result = conn.execute(text(query), params)
        return result.all() if result.returns_rows else []


def write_png(path, colour=(200, 30, 30), size=(20, 16)):
    Image.new("RGB", size, colour).save(path)
    return path


def write_wav(path, seconds=0.5):
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


def text_queue(store, queue, texts, k=1):
    path = store.root / f"{queue}.txt"
    path.write_text("\n".join(texts) + "\n")
    report = store.import_paths(queue, [path])
    store.set_required_labels(queue, k)
    return report.added


# --- storage and import ------------------------------------------------------------------

def test_same_content_is_one_content_addressed_item_and_bad_inputs_are_named(store, tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    write_png(folder / "a.png")
    write_png(folder / "a_again.png")  # same bytes, another name
    write_wav(folder / "voice.wav")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave")  # queued, it could never be played or predicted
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a clip")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.json").write_text("{}")
    (folder / ".hidden.png").write_bytes(b"ignored")
    (folder / "texts.txt").write_text("so happy today\n\nso happy today\nthis is awful\n")
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.write(folder / "a.png", "pics/same_as_a.png")
        z.writestr("__MACOSX/._junk.png", b"junk")
        z.writestr("more.csv", "id,text\n1,I can't stop smiling\n2,\n")
        z.writestr("clip.xyz", b"data")

    report = store.import_paths("q", [folder, bundle, tmp_path / "missing.wav"])

    assert len(report.added) == 5  # a.png, voice.wav, two texts, one CSV text
    assert report.duplicates == 3  # a_again.png, the repeated line, the zipped copy of a.png
    errors = "\n".join(report.errors)
    for expected in ("broken.png: not a readable image", "broken.wav: cannot decode audio", "broken.mp4: cannot read video",
                     "empty.jpg: file is empty", "notes.json: unsupported format", "clip.xyz: unsupported format",
                     "missing.wav: file not found"):
        assert expected in errors
    assert len(report.errors) == 7 and ".part" not in errors  # named as uploaded, not as the temp copy
    image = store.item("q", report.added[0])
    digest = hashlib.sha256((folder / "a.png").read_bytes()).hexdigest()
    assert image.modality == "image" and image.sha256 == digest
    assert image.media == store.root / "media" / digest[:2] / f"{digest}.png" and image.media.is_file()
    assert not list(store.media_dir.rglob("*.part*"))  # no temp file left behind, even for rejected inputs
    # The same file in another queue is the same item, listed in both.
    assert store.import_paths("other", [folder / "a_again.png"]).added == [image.id]


def test_csv_manifest_of_paths_is_read_relative_to_the_csv(store, tmp_path):
    write_png(tmp_path / "x.png")
    write_wav(tmp_path / "y.wav")
    (tmp_path / "list.csv").write_text("path,label\nx.png,happy\ny.wav,sad\nz.png,fear\n")
    report = store.import_paths("q", [tmp_path / "list.csv"])
    assert [store.item("q", i).modality for i in report.added] == ["image", "audio"]
    assert report.errors == [f"{tmp_path / 'z.png'}: file not found"]


def test_schema_is_versioned_and_a_newer_database_is_refused(store):
    assert store.schema_version() == migrations.head() == "0004"
    AnnotationStore(store.root, url_of(store))  # reopening migrates nothing twice
    assert sql(store, "SELECT version_num FROM alembic_version") == [("0004",)]
    if store.engine.dialect.name == "sqlite":
        assert sql(store, "PRAGMA journal_mode") == [("wal",)]
    sql(store, "UPDATE alembic_version SET version_num = '9999'")  # written by a later app
    with pytest.raises(RuntimeError, match="revision 9999 is newer"):
        AnnotationStore(store.root, url_of(store))


def test_stores_opening_new_databases_at_once_create_each_once(tmp_path, backend_url):
    """Two data folders (on SQLite, two databases), each opened by several stores at once."""
    roots = [tmp_path / f"data{i % 2}" for i in range(STORES_AT_ONCE)]
    with ThreadPoolExecutor(STORES_AT_ONCE) as pool:  # each store its own engine and connections
        stores = list(pool.map(lambda root: AnnotationStore(root, backend_url), roots))
    assert {s.schema_version() for s in stores} == {migrations.head()}  # one migrated, the others found it done
    assert all(sql(s, "SELECT COUNT(*) FROM alembic_version") == [(1,)] for s in stores)
    for s in stores:
        s.engine.dispose()


def test_connections_opening_a_new_sqlite_file_at_once_all_get_in(tmp_path):
    """Switching a new file to WAL from several connections at once: SQLite refuses some
    of them at once, without waiting (about 1 in 130 openings here before the wait)."""
    def connect(url):
        with database.open_engine(url).connect() as conn:
            return conn.exec_driver_sql("PRAGMA journal_mode").scalar()

    for trial in range(100):
        url = f"sqlite:///{tmp_path / f'new{trial}.sqlite3'}"
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(connect, [url] * 8)) == ["wal"] * 8


# As the store before Alembic created it (its schema_version 1): such a file must upgrade in place.
PRE_ALEMBIC_SCHEMA = """
CREATE TABLE schema_version(version INTEGER NOT NULL, applied_at REAL NOT NULL);
CREATE TABLE queues(
    name TEXT PRIMARY KEY,
    required_labels INTEGER NOT NULL DEFAULT 1 CHECK (required_labels >= 1),
    created_at REAL NOT NULL);
CREATE TABLE items(
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL,
    media TEXT,
    text TEXT,
    original_name TEXT,
    created_at REAL NOT NULL);
CREATE TABLE queue_items(
    queue TEXT NOT NULL REFERENCES queues(name),
    item_id INTEGER NOT NULL REFERENCES items(id),
    source TEXT NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (queue, item_id));
CREATE TABLE predictions(
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    model TEXT NOT NULL,
    label TEXT NOT NULL,
    probs TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (item_id, model));
CREATE TABLE labels(
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
    FOREIGN KEY (queue, item_id) REFERENCES queue_items(queue, item_id));
CREATE UNIQUE INDEX labels_current ON labels(queue, item_id, annotator) WHERE superseded_at IS NULL;
CREATE INDEX labels_by_annotator ON labels(queue, annotator, id);
CREATE TABLE claims(
    queue TEXT NOT NULL,
    item_id INTEGER NOT NULL,
    annotator TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue, item_id));
CREATE TABLE history(
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    queue TEXT,
    item_id INTEGER,
    annotator TEXT,
    detail TEXT);
INSERT INTO schema_version VALUES (1, 0);
INSERT INTO queues VALUES ('q', 2, 0);
INSERT INTO items(id, sha256, modality, text, created_at) VALUES (1, 'aa', 'text', 'one', 0), (2, 'bb', 'text', 'two', 0);
-- queued in the other order than their ids: the queue's order was SQLite's rowid
INSERT INTO queue_items VALUES ('q', 2, 'upload', 1), ('q', 1, 'upload', 1);
INSERT INTO predictions VALUES (1, 2, 'text-x@1', 'sad', '{}', 0);
-- alice labelled 'two' happy then changed it to sad; bob labelled 'two' sad
INSERT INTO labels VALUES (1, 'q', 2, 'alice', 'happy', 0, 't1', 1, 2, 2), (2, 'q', 2, 'alice', 'sad', 0, 't2', 2, NULL, NULL),
                          (3, 'q', 2, 'bob', 'sad', 1, 't3', 3, NULL, NULL);
INSERT INTO claims VALUES ('q', 1, 'alice', 1e12);
INSERT INTO history(at, action, queue, item_id, annotator) VALUES (1, 'label', 'q', 2, 'alice'),
    (2, 'label', 'q', 2, 'alice'), (3, 'label', 'q', 2, 'bob');
"""


def test_a_database_from_before_alembic_is_upgraded_in_place(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    with sqlite3.connect(root / database.DB_NAME) as conn:
        conn.executescript(PRE_ALEMBIC_SCHEMA)
    store = AnnotationStore(root)
    assert store.schema_version() == migrations.head()
    assert sql(store, "SELECT MAX(version) FROM schema_version") == [(2,)]  # the app before Alembic now refuses it
    assert [item.text for item, _ in store.labelled_items("q")] == ["two"]
    assert [(v.annotator, v.label, v.unsure) for v in store.votes("q", 2)] == [("alice", "sad", False),
                                                                               ("bob", "sad", True)]
    assert store.agreed_labels("q") == [("two", "sad")]
    assert store.stored_prediction(2)["model"] == "text-x@1"
    assert [h["annotator"] for h in store.history("q")] == ["alice", "alice", "bob"]
    assert store.next_item("q", "alice").id == 1  # her lease survived
    store.submit("q", 1, "alice", "angry")
    assert [item.id for item, _ in store.labelled_items("q")] == [2, 1]  # queue order survived: 'two' was queued first
    (added,) = text_queue(store, "q", ["three"], k=2)
    store.submit("q", added, "bob", "fear")
    assert [item.id for item, _ in store.labelled_items("q")] == [2, 1, added]  # new items queue after the old ones
    assert store.undo("q", "alice") == 1
    assert store.undo("q", "alice") == 2 and store.answer("q", 2, "alice").label == "happy"  # her old change walks back
    assert sql(store, "SELECT COUNT(*) FROM labels") == [(5,)]
    assert AnnotationStore(root).schema_version() == migrations.head()  # and opens again as it is


def test_a_damaged_database_file_is_reported_and_left_as_it_is(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    damaged = b"this is not a database\n" * 40
    (root / database.DB_NAME).write_bytes(damaged)
    with pytest.raises(StoreUnavailable, match="annotations.sqlite3: file is not a database") as raised:
        AnnotationStore(root)
    assert isinstance(raised.value, OSError)  # what callers that report unreadable files already catch
    assert (root / database.DB_NAME).read_bytes() == damaged  # never recreated empty


def test_an_unreachable_database_server_is_reported_without_its_password(tmp_path):
    url = f"postgresql+psycopg://annotator:s3cret@/annotations?host={tmp_path / 'no-server-here'}"
    with pytest.raises(StoreUnavailable, match="annotator:\\*\\*\\*@/annotations") as raised:
        AnnotationStore(tmp_path / "data", url)
    assert "s3cret" not in str(raised.value)


def test_database_url_puts_the_default_store_on_postgresql(postgres_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    probs = dict.fromkeys(LABELS, 1 / 7)
    item_id = annotation.add_item_from_prediction("text", "so happy", {"label": "happy", "probs": probs, "model": "m@1"})
    store = annotation.default_store()
    assert store.engine.dialect.name == "postgresql"
    assert store.item(annotation.SENT_QUEUE, item_id).text == "so happy"
    assert store.stored_prediction(item_id)["model"] == "m@1"
    assert not (store.root / database.DB_NAME).exists()  # the data folder holds only media


# --- the annotation loop ---------------------------------------------------------------------

def test_claims_are_exclusive_and_an_expired_lease_gives_the_item_back(store):
    first, second, third = text_queue(store, "q", ["one", "two", "three"])
    assert store.next_item("q", "alice").id == first
    assert store.next_item("q", "bob").id == second
    assert store.next_item("q", "alice").id == first  # still held by alice: she gets it again
    assert store.next_item("q", "carol", lease=0).id == third  # carol's lease runs out at once...
    assert store.next_item("dave", "dave") is None  # (no such queue)
    assert store.next_item("q", "dave").id == third  # ...so her item goes to the next annotator


def test_a_renewed_lease_holds_an_unrenewed_one_expires_and_leaving_releases(store):
    first, second, _ = text_queue(store, "q", ["one", "two", "three"])
    assert annotation.LEASE_SECONDS <= 2 * 60  # a closed page gives its item back within minutes
    assert store.next_item("q", "alice", lease=0.3).id == first
    assert store.next_item("q", "bob", lease=0.3).id == second
    for _ in range(3):  # alice's page is open: its heartbeat renews her hold past the first lease
        time.sleep(0.15)
        assert store.renew("q", first, "alice", lease=0.3)
    # bob's page was closed: his lease ran out, so his item is offered again; alice's still held
    assert store.next_item("q", "carol").id == second
    assert not store.renew("q", second, "bob")  # his page's late heartbeat does not take it back
    assert store.release("alice", "q") == 1  # alice leaves the queue: her item is free at once
    assert store.next_item("q", "dave").id == first


def test_a_group_photo_is_one_item_per_face_with_its_prediction(store):
    ids = store.add_sent("image", str(ROOT / "examples" / "two_faces.jpg"))
    assert len(ids) == 2
    faces = [store.item(annotation.SENT_QUEUE, i) for i in ids]
    assert [f.original_name for f in faces] == ["two_faces.jpg · face 1", "two_faces.jpg · face 2"]
    assert all(Image.open(f.media).size == (96, 96) for f in faces)  # the crops the image model reads
    predictions = [store.stored_prediction(i) for i in ids]
    assert all(p and set(p["probs"]) == set(LABELS) for p in predictions)
    assert predictions[0]["probs"] != predictions[1]["probs"]  # each face's own


def test_a_dialogue_is_one_item_per_turn_with_the_turns_before_it(store):
    dialogue = "Ann: We won the cup!\nBob: I can't believe it.\nAnn: <b>Best</b> day ever!"
    ids = store.add_sent("text", dialogue, dialogue=True)
    turns = [store.item(annotation.SENT_QUEUE, i) for i in ids]
    assert [t.text for t in turns] == ["We won the cup!", "I can't believe it.", "<b>Best</b> day ever!"]
    assert [t.original_name for t in turns] == ["turn 1 · Ann", "turn 2 · Bob", "turn 3 · Ann"]
    assert turns[2].context == ("Ann: We won the cup!", "Bob: I can't believe it.") and turns[0].context == ()
    # the same words in another conversation are another item
    assert store.add_sent("text", "Cat: Hi\nAnn: We won the cup!", dialogue=True)[1] != ids[0]
    from emotion_app.app.annotate import _text_item
    shown = _text_item(turns[2])
    assert "> Ann: We won the cup\\!" in shown and "<b>" not in shown  # context above the turn, escaped


def test_instructions_hidden_prediction_and_heartbeat_in_the_tab(store):
    from emotion_app.app import annotate as ui
    (first,) = text_queue(store, "q", ["one"])
    store.set_instructions("q", "Label the **speaker's** feeling. <script>alert(1)</script>")
    assert store.instructions("q").startswith("Label the")
    rendered = ui.start(store, "q", "alice", None)
    instructions, heartbeat = rendered[12], rendered[13]
    assert "**speaker's**" in instructions.value and "<script>" not in instructions.value
    assert heartbeat.active is True  # the page renews its lease while an item is on screen
    state = rendered[0]
    set_active("text", "text-tfidf-lr")
    assert ui.show_prediction(store, "q", state, hidden=True) == (None, "_The model's pre-annotation is hidden._")
    assert ui.show_prediction(store, "q", state)[0] is not None
    other = ui.start(store, "other-queue", "alice", state)  # Start on another queue releases this one's item
    assert other[13].active is False
    assert store.next_item("q", "bob").id == first
    with pytest.raises(annotation.InputError, match="limit"):
        store.set_instructions("q", "x" * (annotation.MAX_INSTRUCTIONS + 1))


def test_k_labels_per_item_each_from_a_different_annotator(store):
    first, second = text_queue(store, "q", ["one", "two"], k=2)
    store.submit("q", first, "alice", "happy")
    store.submit("q", second, "alice", "sad")
    assert store.next_item("q", "alice") is None  # she answered both; each still needs a second label
    assert store.next_item("q", "bob").id == first
    store.submit("q", first, "bob", "happy")
    progress = store.progress("q", "bob")
    assert (progress.total, progress.complete, progress.required, progress.labelled_by_me, progress.left_for_me) == \
        (2, 1, 2, 1, 1)
    assert [(v.annotator, v.label) for v in store.votes("q", first)] == [("alice", "happy"), ("bob", "happy")]
    assert store.agreed_labels("q") == [("one", "happy")]  # 'two' has only one label of the two required
    with pytest.raises(ValueError, match="unknown label"):
        store.submit("q", second, "bob", "bored")


def test_undo_and_relabel_keep_every_row_and_walk_back_through_changes(store):
    first, second = text_queue(store, "q", ["one", "two"])
    store.submit("q", first, "alice", "happy")
    store.submit("q", second, "alice", "sad")
    store.submit("q", first, "alice", "angry", unsure=True)  # went back and changed her mind
    assert store.answer("q", first, "alice").label == "angry"
    assert store.undo("q", "alice") == first  # the change is undone: happy is current again
    assert store.answer("q", first, "alice").label == "happy"
    assert store.undo("q", "alice") == second  # then the label before it
    assert store.answer("q", second, "alice") is None
    assert store.next_item("q", "alice").id == second  # and its item is hers to label again
    assert store.undo("q", "alice") == first
    assert store.undo("q", "alice") is None
    assert sql(store, "SELECT COUNT(*) FROM labels") == [(3,)]  # nothing deleted
    assert sql(store, "SELECT COUNT(*) FROM labels WHERE superseded_at IS NULL") == [(0,)]
    actions = [h["action"] for h in store.history("q") if h["annotator"] == "alice"]
    assert actions == ["label", "label", "label", "undo", "undo", "undo"]


def test_back_skip_and_relabel_through_the_tab_handlers(store):
    from emotion_app.app import annotate as annotation_ui
    first, second, third = text_queue(store, "q", ["one", "two", "three"])
    state = annotation_ui.start(store, "q", "alice", None)[0]
    assert state["item"] == first
    state = annotation_ui.answer(store, "happy", "q", "alice", False, state, state["view"])[0]
    state = annotation_ui.answer(store, None, "q", "alice", False, state, state["view"])[0]  # skip 'two'
    assert state["item"] == third
    state = annotation_ui.back(store, "q", "alice", state)[0]
    assert (state["item"], state["revisit"]) == (second, True)
    state = annotation_ui.back(store, "q", "alice", state)[0]
    assert state["item"] == first
    state = annotation_ui.answer(store, None, "q", "alice", False, state, state["view"])[0]  # 'next' on an answered item
    assert state["item"] == second and store.answer("q", first, "alice").label == "happy"
    view = state["view"]
    state = annotation_ui.answer(store, "sad", "q", "alice", True, state, state["view"])[0]  # the skipped item gets a label
    assert state["item"] == third and not state["revisit"]
    assert store.submit("q", second, "alice", "sad", token=view) == store.submit("q", second, "alice", "sad", token=view)
    vote = store.answer("q", second, "alice")
    assert (vote.label, vote.unsure) == ("sad", True)
    rendered = annotation_ui.undo(store, "q", "alice", state)
    assert rendered[0]["item"] == second and "Undid" in rendered[1]


def test_a_key_pressed_for_an_item_no_longer_on_screen_labels_nothing(store):
    from emotion_app.app import annotate as annotation_ui
    first, second = text_queue(store, "keys", ["one", "two"])
    shown = annotation_ui.start(store, "keys", "alice", None)[0]
    after_first_key = annotation_ui.answer(store, "angry", "keys", "alice", False, shown, shown["view"])
    state = after_first_key[0]
    assert state["item"] == second and after_first_key[11] == state["view"]  # the browser is told the new showing
    # the second key was pressed while item 2 was on its way: it carries item 1's showing
    refused = annotation_ui.answer(store, "disgust", "keys", "alice", False, state, shown["view"])
    assert refused[0]["item"] == second and "nothing was saved" in refused[1]
    assert store.answer("keys", first, "alice").label == "angry" and store.answer("keys", second, "alice") is None
    (store.root / "x.doc").write_text("a document")
    message, _ = annotation_ui.import_files(store, "q2", [write_png(store.root / "p.png"), store.root / "x.doc"], 2)
    assert "1 item(s) added" in message and "x.doc: unsupported format" in message
    assert store.required_labels("q2") == 2


def test_a_label_and_the_heartbeat_go_to_the_queue_the_item_was_served_from(store, monkeypatch):
    from emotion_app.app import annotate as annotation_ui
    first, second = text_queue(store, "qa", ["one", "two"])
    text_queue(store, "qb", ["one", "two"])  # the same items in a second queue
    text_queue(store, "qc", ["three"])
    state = annotation_ui.start(store, "qa", "alice", None)[0]
    for picked in ("qb", "qc"):  # the list changed without pressing Start
        renewed = []
        monkeypatch.setattr(store, "renew", lambda queue, item, annotator: renewed.append(queue) or True)
        annotation_ui.renew(store, picked, "alice", state)
        assert renewed == ["qa"]
        monkeypatch.undo()
    state = annotation_ui.answer(store, "happy", "qb", "alice", False, state, state["view"])[0]
    assert store.answer("qa", first, "alice").label == "happy" and store.answer("qb", first, "alice") is None
    state = annotation_ui.answer(store, "sad", "qc", "alice", False, state, state["view"])[0]
    assert store.answer("qa", second, "alice").label == "sad" and state["queue"] == "qa"
    assert annotation_ui.show_prediction(store, "qc", {**state, "item": first})[0]  # qa's item, predicted


def test_prediction_is_computed_when_shown_then_reused_and_a_missing_model_is_said(store, monkeypatch):
    set_active("text", "text-tfidf-lr")  # the small bundled model, in this test's own data folder
    (item_id,) = text_queue(store, "q", ["I am so happy, this is wonderful"])
    item = store.item("q", item_id)
    result = store.prediction(item)
    assert result["label"] == "happy" and result["model"].startswith("text-tfidf-lr@")

    def no_model(modality, inputs, **_):
        raise KeyError(f"no {modality} model is available")

    monkeypatch.setattr(annotation, "classify", no_model)
    assert store.prediction(item)["probs"] == pytest.approx(result["probs"], abs=1e-6)  # stored, not recomputed
    assert [h["action"] for h in store.history()].count("prediction") == 1
    (clip,) = store.import_paths("q", [write_wav(store.root / "v.wav")]).added
    message = store.prediction(store.item("q", clip))
    assert "not available" in message and "audio" in message


def test_send_to_annotation_keeps_the_prediction_the_tab_showed(tmp_path):
    from emotion_app.app import annotate as annotation_ui
    pixels = np.full((24, 24, 3), 128, dtype=np.uint8)
    probs = dict(zip(LABELS, [0.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0]))
    message = annotation_ui.send_to_annotation("image", pixels, {"label": "happy", "probs": probs, "model": "m@1"})
    assert "Sent to the annotation queue" in message
    assert "Sent" in annotation_ui.send_to_annotation("image", pixels, None)  # the same picture again
    store = annotation.default_store()
    assert store.root == tmp_path / "user-data"  # conftest's isolated data folder
    item = store.next_item(annotation.SENT_QUEUE, "alice")
    assert store.stored_prediction(item.id) == {"model": "m@1", "label": "happy", "probs": probs}
    assert store.progress(annotation.SENT_QUEUE).total == 1
    clip = tmp_path / "webcam.webm"  # as the Video tab's webcam records it
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.5", "-c:v", "libvpx",
                    str(clip)], check=True)
    assert "Sent" in annotation_ui.send_to_annotation("video", str(clip), None)
    assert store.item(annotation.SENT_QUEUE, 2).modality == "video"  # the tab's word, not the extension's guess
    missing = annotation_ui.send_to_annotation("audio", str(tmp_path / "nope.wav"), None)
    assert "nope.wav: file not found" in missing and str(tmp_path) not in missing  # the name, not the server path
    assert "no image given" in annotation_ui.send_to_annotation("image", None, None)  # Send pressed before an upload
    assert "empty text" in annotation_ui.send_to_annotation("text", "   ", None)


# --- agreement ------------------------------------------------------------------------------

def test_tab_import_keeps_k_unless_one_is_given_and_names_uploads_by_file_name(store, tmp_path):
    from emotion_app.app import annotate as annotation_ui
    upload = tmp_path / "server-upload-3f2a"
    upload.mkdir()
    face, bad = write_png(upload / "face.png"), upload / "bad.jpg"
    bad.write_bytes(b"not a picture")
    store.set_required_labels("q", 3)
    message, _ = annotation_ui.import_files(store, "q", [str(face), str(bad)], 0)  # the k field left empty
    assert "1 item(s) added" in message and "- skipped bad.jpg: not a readable image" in message
    assert str(upload) not in message and store.required_labels("q") == 3
    message, _ = annotation_ui.import_files(store, "q", [str(face)], -2)
    assert "k must be 1 or more" in message and store.required_labels("q") == 3
    annotation_ui.import_files(store, "q", [str(face)], 2)
    assert store.required_labels("q") == 2
    for huge in (1e30, float("nan"), 101):
        message, _ = annotation_ui.import_files(store, "q", [str(face)], huge)
        assert "⚠️ k must be 1 or more, at most 100" in message and store.required_labels("q") == 2
        assert annotation_ui.set_required(store, "q", huge).startswith("⚠️ k must be 1 or more, at most 100")
    assert annotation_ui.set_required(store, "q", 100) == "Each item of **q** now needs 100 label(s)."


def test_a_queue_name_the_store_refuses_is_said_by_every_admin_handler(store, tmp_path):
    from emotion_app.app import annotate as annotation_ui
    long_name, refused = "q" * 5000, "⚠️ queue name is 5000 characters long; the limit is 100"
    message, _ = annotation_ui.import_files(store, long_name, [str(write_png(tmp_path / "a_photo.jpg"))], 1)
    assert message == refused and store.queue_names() == []
    assert annotation_ui.set_instructions(store, long_name, "hi")[0] == refused
    assert annotation_ui.set_order(store, long_name, "margin")[0] == refused
    assert annotation_ui.set_required(store, long_name, 2) == refused
    message = annotation_ui.set_order(store, "q", "<img src=x onerror=alert(1)>")[0]  # what was typed, as text
    assert message.startswith("⚠️ unknown order '\\<img src=x onerror=alert(1)\\>'")


def test_an_import_says_why_files_were_skipped_and_names_only_the_first_few(store, tmp_path):
    from emotion_app.app import annotate as annotation_ui
    upload = tmp_path / "server-upload-77ab"
    upload.mkdir()
    climbing, clutter, many = upload / "climbing.zip", upload / "clutter.zip", upload / "many.zip"
    with zipfile.ZipFile(climbing, "w") as z:  # backslashes: a dot-file name to POSIX, a way out to Windows tools
        z.write(write_png(tmp_path / "face.png"), "face.png")
        z.write(tmp_path / "face.png", "..\\..\\..\\tmp\\audit\\pwned_bs.jpg")
    with zipfile.ZipFile(clutter, "w") as z:
        z.writestr("__MACOSX/._face.png", b"junk")
        z.writestr(".DS_Store", b"junk")
    with zipfile.ZipFile(many, "w") as z:
        for i in range(annotation_ui.MAX_LISTED_SKIPS + 5):
            z.writestr(f"notes{i}{'x' * 5000}.doc", b"a document")  # a long name is cut, its reason kept
    message, _ = annotation_ui.import_files(store, "q", [str(climbing)], 0)
    assert message.startswith("**q**: 0 item(s) added, 1 skipped.")  # refused whole, as a '../' member is
    assert "- skipped climbing.zip: member '.." in message and "pwned_bs.jpg' points outside the archive" in message
    assert str(upload) not in message
    message, _ = annotation_ui.import_files(store, "q", [str(clutter)], 0)
    assert "- skipped clutter.zip: no files to import (hidden ones such as" in message
    message, _ = annotation_ui.import_files(store, "q", [str(many)], 0)
    assert message.count("- skipped many.zip:notes") == annotation_ui.MAX_LISTED_SKIPS
    assert message.count("unsupported format .doc") == annotation_ui.MAX_LISTED_SKIPS and len(message) < 8000
    assert message.endswith("- … and 5 more skipped") and "15 skipped" in message
    assert store.import_paths("q", [climbing]).added == []  # the command line's import refuses it too


def test_locally_the_tab_asks_for_a_queue_not_a_sign_in(store):
    from emotion_app.app import access
    from emotion_app.app import annotate as annotation_ui
    local = access.user_named(None, "local")  # the one person at the keyboard: no sign-in here
    assert annotation_ui.start(store, "", local.name, None)[1] == "Choose a queue, then press Start."
    assert annotation_ui.answer(store, "happy", "", local.name, False, None)[1] == "Press Start first."
    assert annotation_ui.start(store, "q", "", None)[1].startswith("Sign in")  # nobody signed in, elsewhere


def test_kappas_match_hand_computed_values():
    a = ["happy", "happy", "sad", "sad", "angry", "happy"]
    b = ["happy", "sad", "sad", "sad", "angry", "happy"]
    # observed 5/6, chance (3*2 + 2*3 + 1*1)/36 = 13/36: (17/36) / (23/36)
    assert cohen_kappa(a, b) == pytest.approx(17 / 23)
    from sklearn.metrics import cohen_kappa_score
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(["sad"] * 3, ["sad"] * 3) is None  # chance agreement is 1: undefined
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210.
    wikipedia = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                 [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(wikipedia) == pytest.approx(0.2099, abs=1e-4)
    assert item_agreement(["sad", "happy"]) == (None, 0.5)
    assert item_agreement(["sad", "happy", "sad"]) == ("sad", pytest.approx(2 / 3))


def test_queue_agreement_reports_fleiss_and_pairwise_cohen(store):
    votes = {"alice": ["happy", "happy", "sad", "angry"], "bob": ["happy", "happy", "sad", "sad"],
             "carol": ["happy", "sad", "sad", "sad"]}
    ids = text_queue(store, "q", ["w", "x", "y", "z"], k=3)
    for annotator, labels in votes.items():
        for item_id, label in zip(ids, labels):
            store.submit("q", item_id, annotator, label)
    stats = store.agreement("q")
    # Per item P_i = 1, 1/3, 1, 1/3 -> 2/3; shares happy 5/12, sad 6/12, angry 1/12 -> 62/144:
    assert stats["fleiss_kappa"] == pytest.approx((2 / 3 - 62 / 144) / (1 - 62 / 144))  # = 17/41
    assert stats["fleiss_kappa"] == pytest.approx(fleiss_kappa(label_counts(list(zip(*votes.values())))))
    assert stats["cohen_kappa"]["alice vs bob"] == {"kappa": pytest.approx(0.6), "items": 4}
    assert stats["items_with_two_or_more_labels"] == 4
    assert stats["mean_item_agreement"] == pytest.approx((1 + 2 / 3 + 1 + 2 / 3) / 4)
    assert store.agreed_labels("q") == [("w", "happy"), ("x", "happy"), ("y", "sad"), ("z", "sad")]


# --- durability -----------------------------------------------------------------------------

WORKERS = 3


def label_until(root, url, annotator, seconds, start, results):
    """A worker process: take items and label them for a while; every submit is sent twice
    (a retry) and must still be stored once. (This module imports no gradio at the top, so
    spawning workers stays cheap.)"""
    store = AnnotationStore(root, url)
    submitted = []
    start.wait(timeout=120)  # all workers label during the same seconds
    deadline = time.time() + seconds
    while time.time() < deadline:
        item = store.next_item("shared", annotator)
        if item is None:
            break
        token = f"{annotator}:{item.id}"
        label_id = store.submit("shared", item.id, annotator, LABELS[item.id % 7], token=token)
        assert store.submit("shared", item.id, annotator, LABELS[item.id % 7], token=token) == label_id
        submitted.append((token, label_id))
        time.sleep(0.01)  # an annotator's pause: without any, SQLite's busy handler can starve one writer
    results.put(submitted)


def test_concurrent_processes_store_every_label_exactly_once(store):
    text_queue(store, "shared", [f"text number {i}" for i in range(3000)])
    context = multiprocessing.get_context("spawn")
    results, start = context.Queue(), context.Barrier(WORKERS)
    workers = [context.Process(target=label_until, args=(store.root, url_of(store), f"annotator{i}", 2.0, start,
                                                         results)) for i in range(WORKERS)]
    for w in workers:
        w.start()
    submitted = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    assert all(len(s) > 5 for s in submitted), [len(s) for s in submitted]  # every worker got work done
    everything = dict(pair for s in submitted for pair in s)
    assert dict(sql(store, "SELECT token, id FROM labels")) == everything  # each label once, with the id it was given
    # claims are exclusive: with k=1 no item was handed to two annotators
    assert sql(store, "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM labels GROUP BY item_id) AS per_item") == [(1,)]
    assert sql(store, "SELECT COUNT(*) FROM history WHERE action = 'label'") == [(len(everything),)]


WRITER = """
import sys, time
from sqlalchemy import text
from emotion_app.annotation import AnnotationStore
store = AnnotationStore(sys.argv[1], sys.argv[2])
mode = sys.argv[3]
while (item := store.next_item("q", "writer")) is not None:
    print(store.submit("q", item.id, "writer", "sad"), flush=True)
    if mode == "hold" and item.id == 20:
        break
with store.transaction() as conn:  # a transaction that is never committed
    conn.execute(text("INSERT INTO labels(queue, item_id, annotator, label, unsure, token, created_at) "
                      "VALUES ('q', 40, 'writer', 'happy', 0, 'uncommitted', 0)"))
    conn.execute(text("UPDATE labels SET superseded_at = 1"))
    print("holding", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["hold", "loop"])
def test_a_writer_killed_mid_transaction_loses_nothing_committed(store, mode):
    """'hold': killed inside an open write transaction, while another writer waits for it;
    'loop': killed at an arbitrary moment while labelling as fast as it can."""
    text_queue(store, "q", [f"text {i}" for i in range(3000)])
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store.root), url_of(store), mode], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    committed, waiting = [], []
    for line in proc.stdout:
        if line.strip() == "holding" or (mode == "loop" and len(committed) == 40):
            break
        committed.append(int(line))
    if mode == "hold":  # another writer queues behind the open transaction...
        other = threading.Thread(target=lambda: waiting.append(store.submit("q", 2998, "other", "fear")))
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive() and not waiting
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed += [int(line) for line in proc.stdout.read().split() if line.isdigit()]  # printed before the kill
    if mode == "hold":  # ...and goes on once the writer holding the lock is gone
        other.join(timeout=database.BUSY_SECONDS)
        assert waiting and not other.is_alive()

    reopened = AnnotationStore(store.root, url_of(store))
    if store.engine.dialect.name == "sqlite":
        assert sql(reopened, "PRAGMA integrity_check") == [("ok",)]
    ids = [r[0] for r in sql(reopened, "SELECT id FROM labels WHERE annotator = 'writer' AND superseded_at IS NULL "
                                       "ORDER BY id")]
    assert set(committed) <= set(ids)  # nothing the writer saw committed is lost
    assert len(ids) - len(committed) <= 1  # at most the one whose id it had no time to print
    assert not sql(reopened, "SELECT id FROM labels WHERE token = 'uncommitted'")
    logged = sql(reopened, "SELECT COUNT(*) FROM history WHERE action = 'label' AND annotator = 'writer'")[0][0]
    assert logged == len(ids)  # a label and its history row commit together or not at all
    assert reopened.submit("q", 2999, "after", "fear")  # the lock died with the writer


# --- export ----------------------------------------------------------------------------------

def test_export_round_trip(store, tmp_path):
    from datasets import Audio, load_from_disk
    picture, clip = write_png(tmp_path / "face.png"), write_wav(tmp_path / "voice.wav")
    (tmp_path / "t.txt").write_text("I won!\nWhat a mess\n")
    ids = store.import_paths("q", [picture, clip, tmp_path / "t.txt"]).added
    store.set_required_labels("q", 2)
    store.add_item_from_prediction("text", "I won!", {"label": "happy", "probs": dict.fromkeys(LABELS, 1 / 7),
                                                      "model": "text-x@2"}, queue="q")
    votes = {"alice": ["happy", "sad", "happy", "angry"], "bob": ["happy", "fear", "happy", None]}
    for annotator, labels in votes.items():
        for item_id, label in zip(ids, labels):
            store.submit("q", item_id, annotator, label)

    written = export_queue(store, "q", tmp_path / "out")
    ds = load_from_disk(str(written["dataset"]))
    names = ds.features["label"].names
    assert names == list(LABELS) and ds.num_rows == 4
    assert [names[i] if i >= 0 else None for i in ds["label"]] == ["happy", None, "happy", "angry"]
    assert ds["labels"] == [["happy", "happy"], ["sad", "fear"], ["happy", "happy"], ["angry"]]
    assert ds["annotators"][0] == ["alice", "bob"] and ds["complete"] == [True, True, True, False]
    assert ds["agreement"] == [1.0, 0.5, 1.0, 1.0]
    assert ds["modality"] == ["image", "audio", "text", "text"] and ds["text"][2:] == ["I won!", "What a mess"]
    assert ds["prediction_model"][2] == "text-x@2"
    assert ds[0]["image"].size == (20, 16)
    raw_audio = ds.cast_column("audio", Audio(decode=False))[1]["audio"]  # decoding audio needs torchcodec
    assert raw_audio["bytes"] == clip.read_bytes()
    import pandas as pd
    assert pd.read_parquet(written["parquet"])["labels"].map(list).tolist() == ds["labels"]

    texts, labels, _ = read_manifest(str(written["text_csv"]), "text", with_labels=True)
    assert (texts, [LABELS[i] for i in labels]) == (["I won!"], ["happy"])  # 'What a mess' lacks its 2nd label
    paths, labels, _ = read_manifest(str(written["image_csv"]), "image", with_labels=True)
    assert [LABELS[i] for i in labels] == ["happy"]
    assert open(paths[0], "rb").read() == picture.read_bytes()
    assert "audio_csv" not in written  # the voice clip has no agreed label
    with pytest.raises(ValueError, match="mixes"):
        export_csv(store, "q", tmp_path / "mixed.csv")


def test_cli_import_status_and_export(tmp_path, capsys):
    data, folder = tmp_path / "cli-data", tmp_path / "in"
    folder.mkdir()
    (folder / "t.txt").write_text("so glad\nso angry\n")
    assert main(["--data", str(data), "import", "--queue", "batch", "--required-labels", "1", str(folder)]) == 0
    assert "2 item(s) added" in capsys.readouterr().out
    store = AnnotationStore(data)
    for item_id, label in zip((1, 2), ("happy", "angry")):
        store.submit("batch", item_id, "alice", label)
    assert main(["--data", str(data), "status", "--queue", "batch"]) == 0
    assert '"complete": 2' in capsys.readouterr().out
    assert main(["--data", str(data), "export", "--queue", "batch", "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "text.csv", newline="") as f:
        assert list(csv.reader(f)) == [["text", "label"], ["so glad", "happy"], ["so angry", "angry"]]
    assert main(["--data", str(data), "import", "--queue", "batch", str(tmp_path / "nothing.png")]) == 1
    assert main(["--data", str(data), "export", "--queue", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "error: no queue named 'nope'" in capsys.readouterr().err


def test_zip_member_that_is_corrupt_is_reported(store, tmp_path):
    bundle = tmp_path / "b.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.txt", "fine text\n")
        z.writestr("bad.wav", os.urandom(5000))
    data = bytearray(buffer.getvalue())
    start = data.index(b"bad.wav") + len("bad.wav") + 10  # inside the compressed bytes of bad.wav
    data[start:start + 200] = b"\x00" * 200
    bundle.write_bytes(bytes(data))
    report = store.import_paths("q", [bundle])
    assert len(report.added) == 1
    assert len(report.errors) == 1 and "bad.wav" in report.errors[0]


# --- queue order: uncertainty first, re-scoring, rounds, simulation -------------------------

def probs_with_margin(top: str, margin: float) -> dict:
    """Probabilities whose top class leads the second by ``margin``."""
    second = (1 - margin) / 2 - 0.01
    probs = dict.fromkeys(LABELS, (1 - second - (second + margin)) / (len(LABELS) - 2))
    probs[top], probs["neutral" if top != "neutral" else "sad"] = second + margin, second
    return probs


def test_priorities_put_unsure_items_first_and_diversity_spreads_a_batch():
    from emotion_app.annotation import priority
    probs = np.array([[0.9] + [0.1 / 6] * 6, [0.4, 0.38] + [0.22 / 5] * 5, [0.6, 0.2] + [0.04] * 5])
    assert list(np.argsort(-priority.margin_uncertainty(probs))) == [1, 2, 0]
    assert list(np.argsort(-priority.entropy_uncertainty(probs))) == [1, 2, 0]
    # two tight clusters, the first slightly more uncertain: a batch of two takes one from each
    embeddings = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1], [0.01, 1]], dtype=float)
    uncertainty = np.array([0.9, 0.89, 0.88, 0.5, 0.4])
    assert priority.k_center_order(embeddings, uncertainty, batch=2)[:2] == [0, 3]
    votes = [["happy", "sad"], ["happy"], []]
    assert np.argmax(priority.disagreement(votes, ["happy", "sad", "happy"], np.array([0.1, 0.1, 0.9]))) == 0
    with pytest.raises(ValueError, match="unknown order"):
        priority.priorities("alphabetical", probs)


def test_uncertainty_order_serves_the_least_sure_first_and_follows_a_new_model(store, monkeypatch):
    from emotion_app.annotation import rescoring
    set_active("text", "text-tfidf-lr")
    active = "text-tfidf-lr@1"
    sure, unsure, middle = (store.add_item_from_prediction("text", text, {"probs": probs_with_margin("happy", m),
                                                                         "model": active}, queue="q")
                            for text, m in (("sure", 0.9), ("unsure", 0.02), ("middle", 0.4)))
    assert store.next_item("q", "ann").id == sure  # insertion order until the queue is switched
    store.release("ann")
    store.set_strategy("q", "margin")
    assert rescoring.outdated(store, "q")
    job = rescoring.rescore(store, "q")
    assert (job.state, job.total) == ("done", 0)  # the stored predictions are the active model's: none re-run
    assert [store.next_item("q", who).id for who in ("bob", "carol", "dave")] == [unsure, middle, sure]
    assert not rescoring.outdated(store, "q")
    with pytest.raises(annotation.InputError, match="unknown order"):
        store.set_strategy("q", "alphabetical")

    # a new model is activated: every remaining item is predicted again, in batches; one it cannot read is flagged
    set_active("text", "text-minilm")
    assert rescoring.outdated(store, "q")
    real = rescoring.classify
    calls = []

    def classify(modality, inputs, **options):
        calls.append(list(inputs))
        if "middle" in inputs:
            raise RuntimeError("decoder crashed")
        return real(modality, inputs, **options)

    monkeypatch.setattr(rescoring, "classify", classify)
    job = rescoring.rescore(store, "q")
    assert (job.state, job.total, job.done, job.flagged) == ("done", 3, 3, 1), job.describe()
    assert store.unscorable("q") == {middle: "the model failed on this item"}
    assert {store.stored_prediction(i)["model"] for i in (sure, unsure)} == {"text-minilm@1"}
    calls.clear()
    assert rescoring.rescore(store, "q").total == 0 and not calls  # the broken item is not tried again
    store.release("bob"), store.release("carol"), store.release("dave")
    assert store.next_item("q", "erin").id != middle  # served last


def test_an_admin_picking_a_queue_sees_the_order_it_is_served_in(store):
    import gradio as gr

    from emotion_app.app.access import User
    from emotion_app.app.annotate import queue_settings
    text_queue(store, "by-entropy", ["one"])
    store.set_strategy("by-entropy", "entropy")
    order, status, _ = queue_settings(store, User("root", "admin", frozenset({"*"})), "by-entropy")
    assert order.value == "entropy" and "served in **entropy** order" in status
    annotator = User("ann", "annotator", frozenset({"*"}))
    assert queue_settings(store, annotator, "by-entropy") == (gr.skip(),) * 3  # not shown to annotators


def test_switching_the_model_in_the_models_tab_re_scores_uncertainty_first_queues():
    from emotion_app.app.models import activate
    store = annotation.default_store()
    set_active("text", "text-tfidf-lr")
    for line, margin in (("sure", 0.9), ("unsure", 0.02)):
        store.add_item_from_prediction("text", line, {"probs": probs_with_margin("happy", margin),
                                                      "model": "text-tfidf-lr@1"}, queue="by-margin")
    store.add_item_from_prediction("text", "in order", None, queue="in-order")  # insertion order: nothing to do
    store.set_strategy("by-margin", "margin")
    _, message = activate("text-minilm@1")
    assert message.endswith("Re-scoring 1 annotation queue(s) in the background: by-margin."), message


def test_background_rescoring_reports_progress(store):
    from emotion_app.annotation import rescoring
    set_active("text", "text-tfidf-lr")
    text_queue(store, "bg", [f"line number {i}" for i in range(40)])
    store.set_strategy("bg", "entropy")
    job = rescoring.start(store, "bg")
    assert job is not None and rescoring.start(store, "bg") in (job, None)
    deadline = time.time() + 60
    while job.state == "running" and time.time() < deadline:
        time.sleep(0.1)
    assert job.state == "done" and job.done == job.total == 40, job.describe()
    assert "40 of 40 items predicted" in job.describe()
    assert rescoring.start(store, "bg") is None  # nothing outdated: nothing to do


def test_rounds_count_labels_changes_and_scores_per_model(store):
    from emotion_app.annotation.rounds import rounds
    a, b = text_queue(store, "r", ["one", "two"])
    store.store_predictions([(a, {"model": "m@1", "label": "happy", "probs": probs_with_margin("happy", 0.5)}),
                             (b, {"model": "m@1", "label": "sad", "probs": probs_with_margin("sad", 0.5)})])
    store.submit("r", a, "ann", "happy")
    time.sleep(0.01)
    store.store_predictions([(b, {"model": "m@2", "label": "angry", "probs": probs_with_margin("angry", 0.5)})])
    store.submit("r", b, "ann", "angry")
    by_model = {row["model"]: row for row in rounds(store, "r")}
    assert (by_model["m@1"]["labels"], by_model["m@1"]["changed"]) == (1, 0)
    assert (by_model["m@2"]["labels"], by_model["m@2"]["changed"]) == (1, 0)
    assert by_model["m@1"]["agreed_accuracy"] == 0.5 and by_model["m@2"]["agreed_accuracy"] == 1.0
    from emotion_app.app.annotate import show_rounds
    figure, listed = show_rounds(store, "r")
    assert len(figure.data) == 4 and "m@2: 1 labels" in listed


def test_cli_order_rescore_and_rounds(tmp_path, capsys):
    data = tmp_path / "cli-data"
    (tmp_path / "t.txt").write_text("so glad\nso angry\n")
    set_active("text", "text-tfidf-lr")
    assert main(["--data", str(data), "import", "--queue", "q", str(tmp_path / "t.txt")]) == 0
    assert main(["--data", str(data), "order", "--queue", "q", "--strategy", "margin"]) == 0
    assert "2 of 2 items predicted" in capsys.readouterr().out
    assert main(["--data", str(data), "status", "--queue", "q"]) == 0
    assert '"order": "margin"' in capsys.readouterr().out
    assert main(["--data", str(data), "rescore", "--queue", "q"]) == 0
    assert "0 of 0 items predicted" in capsys.readouterr().out
    assert main(["--data", str(data), "rounds", "--queue", "q"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_simulation_curves_start_at_the_model_and_grow_by_a_batch_per_round():
    from emotion_app.annotation import simulate
    rng = np.random.default_rng(0)
    n = simulate.POOL + simulate.EVALUATION
    labels = rng.integers(0, len(LABELS), n)
    embeddings = rng.normal(size=(n, 8)) + np.eye(len(LABELS), 8)[labels] * 2  # the labels are learnable
    probs = np.full((n, len(LABELS)), 1 / len(LABELS))
    corpus = simulate.Corpus("synthetic", [None] * n, labels)
    for strategy in simulate.SIM_STRATEGIES:
        curve = simulate.run("text", strategy, rounds=2, batch=30, seed=0, corpus=corpus, probs=probs,
                             embeddings=embeddings)
        assert [p["labels"] for p in curve] == [0, 30, 60]
        assert curve[-1]["accuracy"] > curve[0]["accuracy"] + 0.2, (strategy, curve)
