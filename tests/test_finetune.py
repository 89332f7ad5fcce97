"""Fine-tuning: upload validation reports, and real jobs end to end (worker process, progress,
a new registered version, activation, rollback, queueing and cancel) on a few dozen rows
of the shared data."""
import csv
import random
import re
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from emotion_app import classify
from emotion_app.annotation import default_store
from emotion_app.app.finetune import activate_job, check, rollback_job, show_job
from emotion_app.core.paths import BUNDLED_WEIGHTS, user_weights_dir
from emotion_app.finetune.data import (
    MAX_PROBLEM_CHARS,
    MAX_PROBLEMS_LISTED,
    MIN_PER_CLASS,
    load_examples,
    save_examples,
    stratified_split,
)
from emotion_app.finetune.jobs import FINISHED_STATES, JobStore, read_progress
from emotion_app.finetune.runner import cancel, submit, validate
from emotion_app.finetune.train import UPLOAD_LICENCE, card_metrics
from emotion_app.models.registry import active_model, get_entry, list_models, set_active

from .conftest import DATA, needs_data

JOB_TIMEOUT = 240


@pytest.fixture(autouse=True)
def stop_leftover_jobs():
    """A failing test must not leave a worker training in the background."""
    yield
    for job in JobStore().jobs():
        if job.status not in FINISHED_STATES:
            cancel(job.id)


def wait_for(job_id, condition, timeout=JOB_TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = JobStore().get(job_id)
        if condition(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s: {read_progress(job)[-3:]}")


def finished(job_id):
    return wait_for(job_id, lambda j: j.status in FINISHED_STATES)


def noise_png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 48), dtype=np.uint8)).save(path)


# --- validation reports ------------------------------------------------------------------------

def test_image_zip_report_lists_every_bad_row(tmp_path):
    files = tmp_path / "files"
    rows = [(f"happy/h{i}.png", "Happiness") for i in range(MIN_PER_CLASS - 2)]  # too few to keep
    for i, (name, _) in enumerate(rows):
        noise_png(files / name, i)
    (files / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    rows += [("broken.png", "angry"), ("missing.png", "happy"), ("happy/h0.png", "grumpy"),
             ("happy/h1.png", "boredom"), ("../escape.png", "happy"), ("", "happy")]
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as z:
        for p in files.rglob("*.png"):
            z.write(p, p.relative_to(files).as_posix())
        z.writestr("manifest.csv", "path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))

    report = validate("image", upload)
    assert report.problems == [
        "manifest.csv line 5 (broken.png): not a readable image (UnidentifiedImageError: cannot identify "
        "image file 'broken.png')",
        "manifest.csv line 6 (missing.png): file not found",
        "manifest.csv line 7 (happy/h0.png): unknown emotion label 'grumpy'; expected one of angry, disgust, "
        "fear, happy, neutral, sad, surprise",
        "manifest.csv line 8 (happy/h1.png): label 'boredom' has no canonical class; row not used",
        "manifest.csv line 9: '../escape.png' points outside the upload",
        "manifest.csv line 10: no path",
        f"class happy: only {MIN_PER_CLASS - 2} usable example(s), at least {MIN_PER_CLASS} are needed; "
        "its rows are not used"]
    assert not report.ok and report.examples == [] and report.rows == 9
    assert report.notes == [f"label 'Happiness' read as happy: {MIN_PER_CLASS - 2} row(s)",
                            f"{MIN_PER_CLASS - 2} image(s): no face detected: used whole"]

    climbing = tmp_path / "climbing.zip"  # backslashes: a dot-file name to POSIX, a way out to Windows tools
    with zipfile.ZipFile(climbing, "w") as z:
        z.writestr("happy/h0.png", (files / "happy" / "h0.png").read_bytes())
        z.writestr("..\\..\\evil.png", b"x")
    assert validate("image", climbing).problems == [
        "climbing.zip: member '..\\\\..\\\\evil.png' points outside the archive; nothing in it was read"]


def test_text_uploads_in_label_folders_and_unusable_uploads(tmp_path):
    folders = tmp_path / "folders"
    for label, stem in (("joy", "what a lovely day"), ("anger", "this makes me furious")):
        (folders / label).mkdir(parents=True)
        (folders / label / "texts.txt").write_text("\n".join(f"{stem} {i}" for i in range(MIN_PER_CLASS)) + "\n\n")
    (folders / "loose.txt").write_text("a text outside any label folder\n")
    report = validate("text", folders)
    assert report.counts == {"angry": MIN_PER_CLASS, "happy": MIN_PER_CLASS}
    assert report.problems == ["loose.txt: not in a folder named by its label, and no CSV manifest names it"]
    assert "No usable rows for disgust, fear, neutral, sad, surprise: fine-tuning learns nothing new" in report.markdown()
    # synonyms are read as the canonical class, and the report says so
    assert sorted(report.notes) == [f"label 'anger' read as angry: {MIN_PER_CLASS} row(s)",
                                    f"label 'joy' read as happy: {MIN_PER_CLASS} row(s)"]

    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\n" + "".join(f"so happy {i},joy\n" for i in range(6)) + ",sad\nhm,\n")
    job, report = submit("text", one_class, start=False)
    assert job is None and not report.ok and JobStore().jobs() == []
    assert report.problems == ["one.csv line 8: no text", "one.csv line 9: no label"]
    assert "Nothing to train on" in report.markdown()
    assert "**2 problem(s):**" in check(str(one_class), None, "text", progress=lambda *a, **k: None)

    not_zip = tmp_path / "data.zip"
    not_zip.write_bytes(b"PK\x03\x04 truncated")
    assert "not a readable zip file" in validate("text", not_zip).problems[0]
    wrong_columns = tmp_path / "wrong.csv"
    wrong_columns.write_text("sentence,emotion\nhello,joy\n")
    assert validate("text", wrong_columns).problems == [
        "wrong.csv: needs 'text' and 'label' columns, has sentence, emotion"]
    unclosed = tmp_path / "unclosed.csv"  # the rows after a stray quote are not read as one long text
    unclosed.write_text('text,label\nso happy,joy\n"never closed,anger\nso sad,sad\n')
    report = validate("text", unclosed)
    assert report.rows == 1 and report.problems[0] == (
        "unclosed.csv: not a readable UTF-8 CSV after 1 row(s) (unexpected end of data)")


def test_annotation_queue_labels_are_a_source(tmp_path):
    store = default_store()
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"we won the cup {i}!\n" for i in range(5))
                     + "".join(f"I miss her so much {i}\n" for i in range(5)))
    item_ids = store.import_paths("reviewed", [texts]).added
    for n, item_id in enumerate(item_ids):
        store.submit("reviewed", item_id, "alice", "happy" if n < 5 else "sad")
    report = validate("text", queue="reviewed")
    assert report.counts == {"happy": 5, "sad": 5} and report.problems == []
    assert "no annotation queue named 'nope'" in validate("text", queue="nope").problems[0]


def test_a_report_with_many_problems_lists_the_first_and_counts_the_rest(tmp_path):
    stray = MAX_PROBLEMS_LISTED + 150
    upload = tmp_path / "stray.zip"
    with zipfile.ZipFile(upload, "w") as z:
        for i in range(stray):
            z.writestr(f"stray{i:05}.txt", "a text outside any label folder\n")
    shown = check(str(upload), None, "text", progress=lambda *a, **k: None)
    listed = [line for line in shown.splitlines() if line.startswith("- ")]
    assert f"**{stray} problem(s):**" in shown and len(listed) == MAX_PROBLEMS_LISTED + 1
    assert listed[0].startswith("- stray00000.txt: not in a folder") and listed[-1] == "- … and 150 more"
    assert "stray00050.txt" not in shown

    report = validate("text", upload)
    assert len(report.problems) == stray  # all of them in memory; the JSON record is bounded like the Markdown
    assert report.to_json()["problem_count"] == stray and report.to_json()["problems"] == report.listed
    assert len(report.listed) == MAX_PROBLEMS_LISTED

    long_label = tmp_path / "long.csv"  # a problem quoting a 100,000-character cell keeps its row and its reason
    long_label.write_text("text,label\nhello," + "x" * 100_000 + "\n")
    shown = check(str(long_label), None, "text", progress=lambda *a, **k: None)
    assert len(shown) < 2 * MAX_PROBLEM_CHARS
    assert "- long.csv line 2: unknown emotion label 'xxx" in shown and shown.rstrip().endswith("sad, surprise")


def test_a_job_shows_its_upload_name_as_text():
    name = "![t](https:ev.il) [click](https:ev.il) b.csv"
    JobStore().add("named", "text", {"source": name})
    JobStore().finish("named", "failed", error=f"{name}: no rows")
    status, shown = show_job("named")[0], r"\!\[t\](https:ev.il) \[click\](https:ev.il) b.csv"
    assert f"(text, {shown}): **failed**" in status and f"⚠️ {shown}: no rows" in status


def test_examples_round_trip_and_the_split_is_stratified(tmp_path):
    labels = [0] * 5 + [3] * 10 + [5] * 5
    crops = [np.full((48, 48), i, np.uint8) for i in range(len(labels))]
    save_examples(tmp_path / "x.npz", crops, labels)
    loaded, y = load_examples(tmp_path / "x.npz")
    assert y.tolist() == labels and all((a == b).all() for a, b in zip(loaded, crops))
    train, held = stratified_split(y, 0.2, seed=0)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(len(labels)))
    assert sorted(y[held].tolist()) == [0, 3, 3, 5]


# --- the tab's API ------------------------------------------------------------------------------

@pytest.fixture
def served():
    """Only the Fine-tune tab, in-process on a free local port (no sign-in: the local user
    is admin), loaded as app.py loads it; yields a function that opens a fresh API client."""
    import gradio as gr
    from gradio_client import Client

    from emotion_app.app import access
    from emotion_app.app.finetune import build

    with gr.Blocks() as demo:
        refresh, outputs = build()
        access.on(demo.load, refresh, None, outputs, with_user=True)
    demo.queue()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield lambda: Client(demo.local_url, verbose=False)
    demo.close()


def test_a_fresh_api_client_names_queues_and_jobs_the_page_never_listed(served, tmp_path):
    """The dropdowns' choices are filled on an admin's page load; a client that never
    loaded them still reaches the handlers, which answer for known and unknown values."""
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"we won the cup {i}!\n" for i in range(5)) + "".join(f"I miss her {i}\n" for i in range(5)))
    store = default_store()
    for n, item_id in enumerate(store.import_paths("reviewed", [texts]).added):
        store.submit("reviewed", item_id, "alice", "happy" if n < 5 else "sad")
    JobStore().add("failed-job", "text", {"source": "b.csv"})
    JobStore().finish("failed-job", "failed", error="b.csv: no rows")

    shown = served().predict(None, "reviewed", "text", api_name="/finetune_check")
    assert shown.startswith("**10 of 10 row(s) usable** for text: happy 5, sad 5")
    assert served().predict(None, "nope", "text", api_name="/finetune_check") == "⚠️ no annotation queue named 'nope'"
    assert served().predict(None, "[x](y)", "text", api_name="/finetune_check") == \
        r"⚠️ no annotation queue named '\[x\](y)'"  # a typed name is shown as text

    status = served().predict("failed-job", api_name="/finetune_job")[0]
    assert status.startswith("**Job failed-job** (text, b.csv): **failed**")
    assert served().predict("nope", api_name="/finetune_job")[0] == "⚠️ no fine-tune job 'nope'"
    assert served().predict("failed-job", api_name="/finetune_cancel") == "Job failed-job already failed."
    assert served().predict("failed-job", api_name="/finetune_activate") == \
        "⚠️ job failed-job is failed: it has no model to activate"
    assert "Nothing rolled back" in served().predict("failed-job", api_name="/finetune_rollback")
    for action in ("cancel", "activate", "rollback"):
        assert served().predict("nope", api_name=f"/finetune_{action}") == "⚠️ no fine-tune job 'nope'"
    assert show_job("nope")[0] == "⚠️ no fine-tune job 'nope'"  # the handler itself, as the poll calls it


# --- real jobs ---------------------------------------------------------------------------------

def carer_csv(path, per_class=8, seed=0):
    """A few rows of each of five CARER classes (love is left out: it maps onto happy too)."""
    with open(DATA / "text" / "carer" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(seed).shuffle(rows)
    chosen = [r for label in ("joy", "sadness", "anger", "fear", "surprise")
              for r in [r for r in rows if r["label"] == label][:per_class]]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([r["text"], r["label"]] for r in chosen)
    return path


@needs_data
def test_text_fine_tune_runs_in_the_background_is_compared_activated_and_rolled_back(tmp_path):
    upload = carer_csv(tmp_path / "carer.csv")
    first, report = submit("text", upload, epochs=2, validation_limit=12)
    assert report.ok and report.counts == {k: 8 for k in ("angry", "fear", "happy", "sad", "surprise")}
    second, _ = submit("text", upload, epochs=40, validation_limit=12)  # long: it is cancelled while running
    wait_for(first.id, lambda j: j.status == "running")
    assert JobStore().get(second.id).status == "queued"  # one job at a time

    first = finished(first.id)
    assert first.status == "done", first.error
    events = read_progress(first)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 2
    assert all(e["loss"] > 0 for e in events if e["event"] == "step")
    assert {e["set"] for e in events if e["event"] == "evaluation"} == {
        "upload_heldout", "carer_dev", "goemotions_dev", "meld_dev"}

    result = first.result
    assert result["base"] == "text-ensemble@1" and result["candidate"] == "text-ensemble-ft@1"
    assert not [p for p in BUNDLED_WEIGHTS.iterdir() if "-ft" in p.name]  # never written over the bundled models
    candidate = get_entry(result["candidate"])
    assert candidate.source == "user" and candidate.config["members"][0]["id"] == "text-minilm-ft@1"
    held = result["evaluations"]["upload_heldout"]
    assert held["before"]["n"] == held["after"]["n"] == 8
    assert candidate.metrics["evaluations"]["upload_heldout"] == held["after"]
    # the validation and headline set compare with the bundled models': the base's own (GoEmotions dev)
    assert candidate.evaluation("headline")[0] == candidate.evaluation("validation")[0] == "goemotions_dev"
    licences = candidate.metrics["training"]["licences"]  # the base's corpora, then the upload, each once
    assert licences[0].startswith("CARER") and licences[-1] == UPLOAD_LICENCE and licences.count(UPLOAD_LICENCE) == 1
    assert len(get_entry("text-minilm-ft@1").metrics["training"]["licences"]) == 5  # CARER, GoEmotions, MELD, MiniLM, upload
    assert {r.ref for r in list_models("text")} >= {"text-minilm-ft@1", "text-ensemble-ft@1"}

    status, figure, rows, log, _, _ = show_job(first.id)
    assert "**done**" in status and "text-ensemble-ft@1" in status and re.search(r"\d\d:\d\d:\d\d done", log)
    assert len(figure.data) == 3 and rows[0][:2] == ["upload_heldout (n=8)", "accuracy"]
    assert "Too few to tell: the upload's held-out part has 8 row(s)" in status

    probe = ["I am so happy today!", "I'm terrified that someone is following me home"]
    before = classify("text", probe)
    assert before[0]["model"] == "text-ensemble@1"  # not used until activated
    store = default_store()
    for text in ("so glad", "not sure about this"):  # an uncertainty-first queue scored by the model before
        store.add_item_from_prediction("text", text, classify("text", [text])[0], queue="by-margin")
    store.set_strategy("by-margin", "margin")
    activated = activate_job(first.id)
    assert "text-ensemble-ft@1" in activated and "Re-scoring 1 annotation queue(s) in the background: by-margin" in activated
    assert all(r["model"] == "text-ensemble-ft@1" for r in classify("text", probe))
    assert "text-ensemble@1" in rollback_job(first.id)
    assert "Nothing rolled back" in rollback_job(first.id)  # its model is no longer the active one
    restored = classify("text", probe)
    assert [r["model"] for r in restored] == [r["model"] for r in before]
    assert [r["probs"] for r in restored] == [r["probs"] for r in before]  # the bundled ensemble is unchanged

    # meanwhile the queued job has started; cancelled while running, it publishes nothing
    wait_for(second.id, lambda j: j.status == "running" and read_progress(j))
    cancel(second.id)
    assert finished(second.id).status == "cancelled"
    assert not (second.folder / "staging").exists()
    assert sorted(p.name for p in user_weights_dir().iterdir()) == ["text-ensemble-ft-v1", "text-minilm-ft-v1"]


@needs_data
def test_image_fine_tune_of_a_single_model_on_fer_crops(tmp_path):
    if "image-vgg" not in {e.id for e in list_models("image")}:
        pytest.skip("the image-vgg model is not in weights/")
    set_active("image", "image-vgg")
    upload = tmp_path / "faces.zip"
    with open(DATA / "face" / "fer2013" / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    with zipfile.ZipFile(upload, "w") as z:
        for label in ("angry", "happy", "surprise"):
            for r in [r for r in rows if r["label"] == label][:MIN_PER_CLASS]:
                z.write(DATA / "face" / "fer2013" / r["file"], f"{label}/{r['file'].rsplit('/', 1)[-1]}")
    job, report = submit("image", upload, epochs=1, validation_limit=20)
    assert report.ok and report.problems == []
    job = finished(job.id)
    assert job.status == "done", job.error
    assert job.result["candidate"] == "image-vgg-ft@1" and job.result["new_models"] == ["image-vgg-ft@1"]
    assert set(job.result["evaluations"]) == {"upload_heldout", "fer2013_publictest"}
    face = str(DATA / "face" / "fer2013" / rows[0]["file"])
    activate_job(job.id)
    assert classify("image", [face])[0]["model"] == "image-vgg-ft@1"
    rollback_job(job.id)
    assert active_model("image").ref == "image-vgg@1" and classify("image", [face])[0]["model"] == "image-vgg@1"


def test_a_fine_tune_card_names_its_base_models_licences_and_the_upload_each_once():
    import dataclasses
    base = get_entry("text-minilm")
    first = card_metrics({"upload_heldout": {}}, base, {"epochs": 1})["training"]
    assert first["licences"] == [*base.metrics["training"]["licences"], UPLOAD_LICENCE] and first["epochs"] == 1
    tuned = dataclasses.replace(base, metrics={"training": first})
    assert card_metrics({"upload_heldout": {}}, tuned, {})["training"]["licences"] == first["licences"]
    written_before_lists = dataclasses.replace(base, metrics={"training": {"licences": "; ".join(first["licences"])}})
    assert card_metrics({"upload_heldout": {}}, written_before_lists, {})["training"]["licences"] == first["licences"]
