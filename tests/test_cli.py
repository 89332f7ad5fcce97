import csv
import json
import subprocess
import sys

from .conftest import DATA, ROOT, needs_data


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "emotion_app", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env)


def test_predict_text_json_is_one_object_per_input():
    proc = run_cli("predict", "--modality", "text", "--json", "I can't believe we won!", "   ", "I miss her so much")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["input"] for r in lines] == ["I can't believe we won!", "   ", "I miss her so much"]
    assert "empty text" in lines[1]["error"]
    for r in (lines[0], lines[2]):
        assert set(r["probs"]) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
        assert abs(sum(r["probs"].values()) - 1) < 1e-3
        assert r["label"] == max(r["probs"], key=r["probs"].get)
        assert "@" in r["model"]
    assert lines[2]["label"] == "sad"


def test_predict_manifest_and_out_file(tmp_path):
    manifest = tmp_path / "texts.csv"
    manifest.write_text("id,text\n1,I am terrified of the dark\n2,\n")
    out = tmp_path / "out.jsonl"
    proc = run_cli("predict", "--modality", "text", "--manifest", str(manifest), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["label"] == "fear" and "error" in rows[1]
    assert "ERROR" in proc.stdout


def test_missing_manifest_column_is_reported(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file\nx.jpg\n")
    proc = run_cli("evaluate", "--modality", "image", "--manifest", str(manifest))
    assert proc.returncode != 0 and "'path' column" in proc.stderr


@needs_data
def test_evaluate_text_on_a_dev_manifest(tmp_path):
    with open(DATA / "text" / "carer" / "val.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:400]
    manifest = tmp_path / "carer.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    proc = run_cli("evaluate", "--modality", "text", "--manifest", str(manifest))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 400 and report["failed"] == 0
    assert report["accuracy"] > 0.6  # chance is ~0.3 for the majority class
    assert len(report["confusion_matrix"]) == 7
    assert set(report) >= {"accuracy", "weighted_f1", "macro_f1", "uar", "per_class_recall"}


def test_models_lists_the_registry():
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(e["id"] == "text-tfidf-lr" for e in entries)
    assert sum(e["active"] for e in entries if e["modality"] == "text") == 1


def test_usage_problems_are_one_line_with_a_nonzero_status(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("text,label\nso happy,joyful\n")
    proc = run_cli("evaluate", "--modality", "text", "--manifest", str(manifest))
    assert proc.returncode != 0 and "line 2: unknown emotion label 'joyful'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("predict", "--modality", "text", "--model", "image-vgg", "hi")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: image-vgg@1 is a model for image, not text"


def test_a_paths_manifest_is_not_read_as_text_and_failed_batches_exit_nonzero(tmp_path):
    manifest = tmp_path / "faces.csv"
    manifest.write_text("path,id\nmissing.jpg,1\n,2\n")
    proc = run_cli("predict", "--modality", "text", "--manifest", str(manifest))
    assert proc.returncode != 0 and "a text manifest needs a 'text' column" in proc.stderr
    proc = run_cli("predict", "--modality", "image", "--json", "--manifest", str(manifest))
    errors = [json.loads(line)["error"] for line in proc.stdout.splitlines()]  # still one line per input
    assert errors == [f"{tmp_path / 'missing.jpg'}: file not found", "empty path: no file named"]
    assert proc.returncode == 1 and "every input failed" in proc.stderr


DIALOGUES = """dialogue_id,utterance_id,speaker,text,label
d1,1,Ross,I got the tickets!,happy
d2,0,Ann,This is disgusting.,disgust
d1,0,Rachel,What tickets?,surprise
,3,Bob,Where do I belong?,neutral
d2,1,Bob,,neutral
d1,2,Ross,The concert! Front row!,happy
"""


def test_dialogue_manifest_reads_each_conversation_in_order_with_its_context(tmp_path):
    manifest = tmp_path / "dialogues.csv"
    manifest.write_text(DIALOGUES)
    proc = run_cli("predict", "--modality", "text", "--dialogue", "--manifest", str(manifest), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["I got the tickets!", "This is disgusting.", "What tickets?",
                                          "Where do I belong?", "", "The concert! Front row!"]  # manifest order
    by_text = {r["input"]: r for r in rows}
    # d1 is read by utterance_id: "What tickets?" (0), then the tickets (1), then the concert (2)
    assert by_text["What tickets?"]["context_turns"] == 0 and by_text["What tickets?"]["following_turns"] == 2
    assert by_text["I got the tickets!"]["context_turns"] == 1 and by_text["I got the tickets!"]["following_turns"] == 1
    assert by_text["This is disgusting."]["context_turns"] == 0  # d2 is its own conversation (its empty turn is left out)
    assert by_text["This is disgusting."]["label"] == "disgust" and by_text["I got the tickets!"]["speaker"] == "Ross"
    assert {r.get("dialogue_id") for r in rows} == {"d1", "d2", None}
    assert by_text["Where do I belong?"]["error"] == "line 5: no dialogue_id: the turn belongs to no conversation"
    assert by_text[""]["error"] == "line 6: empty text: nothing to classify"

    proc = run_cli("evaluate", "--modality", "text", "--dialogue", "--manifest", str(manifest), "--compact")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 4 and report["failed"] == 2 and report["model"].startswith("text-dialogue@")


def test_dialogue_manifest_needs_a_dialogue_id_column(tmp_path):
    manifest = tmp_path / "texts.csv"
    manifest.write_text("text\nhello\n")
    proc = run_cli("predict", "--modality", "text", "--dialogue", "--manifest", str(manifest))
    assert proc.returncode == 2 and "needs a 'dialogue_id' column" in proc.stderr


def test_undecodable_text_and_a_decompression_bomb_fail_alone_and_the_batch_goes_on(tmp_path):
    texts = tmp_path / "texts.csv"
    texts.write_bytes(b"text\nI am so happy today\n\xff\xfe bad bytes\nI am furious\n")
    proc = run_cli("predict", "--modality", "text", "--manifest", str(texts), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("label") for r in rows] == ["happy", None, "angry"]
    assert rows[1]["error"].startswith("not valid UTF-8 text")

    from PIL import Image
    Image.new("1", (30000, 30000)).save(tmp_path / "bomb.png")  # 900 megapixels in a few kilobytes
    Image.open(ROOT / "examples" / "astronaut.jpg").save(tmp_path / "face.png")
    (tmp_path / "images.csv").write_text("path\nbomb.png\nface.png\n")
    proc = run_cli("predict", "--modality", "image", "--manifest", str(tmp_path / "images.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    bomb, face = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(reason in bomb["error"] for reason in ("not a readable image", "megapixels", "too large to decode"))
    assert face["label"] == "happy"


def test_users_are_added_listed_and_removed_with_hashed_passwords(tmp_path):
    import os
    env = {**os.environ, "EMOTION_APP_USERS": str(tmp_path / "users.json")}

    def users(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "emotion_app", "users", *args], cwd=ROOT, capture_output=True,
                              text=True, input=stdin, env=env)

    added = users("add", "alice", "--role", "annotator", "--queues", "faces,sent", "--password-stdin",
                  stdin="a long password\n")
    assert added.returncode == 0 and "alice (annotator) saved" in added.stdout
    assert "a long password" not in (tmp_path / "users.json").read_text()
    listed = users("list")
    assert listed.stdout.split() == ["alice", "annotator", "faces,sent"]
    short = users("add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    assert users("remove").returncode == 2  # a name is needed
    assert users("remove", "alice").returncode == 0 and users("list").stdout == ""


def test_texts_over_255_bytes_are_classified_as_texts():
    long_text = ("I am really happy that we finally won the championship after so many years of trying. " * 4)[:270]
    emoji = "😀" * 70  # 280 bytes: too long for a file name, so it cannot name one
    proc = run_cli("predict", "--modality", "text", "--json", "I am happy", long_text, emoji)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["I am happy", long_text, emoji]
    assert rows[1]["label"] == "happy" and "label" in rows[2]


def test_a_file_name_over_255_bytes_fails_alone_with_its_reason():
    too_long = "a" * 300 + ".jpg"
    proc = run_cli("predict", "--modality", "image", "--json", too_long, "examples/astronaut.jpg")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    bad, face = [json.loads(line) for line in proc.stdout.splitlines()]
    assert bad["error"] == f"{too_long}: file name too long"
    assert face["label"] == "happy"


def test_manifest_cells_over_128_kb_are_read_and_a_cell_over_the_limit_names_its_line(tmp_path):
    manifest = tmp_path / "long.csv"
    manifest.write_text("text\nhello\n" + "I am so happy " * 15_000 + "\n")  # 210 KB in one cell
    proc = run_cli("predict", "--modality", "text", "--json", "--manifest", str(manifest))
    assert proc.returncode == 0, proc.stderr
    hello, long = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "label" in hello and "text truncated to its first 2000 characters" in long["notes"]

    manifest.write_text("text\nhello\n" + "x" * (20 * 1024 * 1024 + 1) + "\n")
    proc = run_cli("predict", "--modality", "text", "--json", "--manifest", str(manifest))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {manifest}: line 3: field larger than field limit")


def test_a_quote_never_closed_is_named_at_its_line_not_read_as_text(tmp_path):
    """A stray opening quote would otherwise swallow the rest of the file into one cell."""
    manifest = tmp_path / "texts.csv"
    manifest.write_text('text,label\nHe said "yes" at last,happy\n"unterminated quote,angry\nmore,sad\n')
    for command in (("predict", "--json"), ("evaluate",)):
        proc = run_cli(*command, "--modality", "text", "--manifest", str(manifest))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"error: {manifest}: line 3: unexpected end of data (a quoted cell is never closed)")


def test_a_manifest_with_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "face.jpg").write_bytes((ROOT / "examples" / "astronaut.jpg").read_bytes())
    images = tmp_path / "images.csv"
    images.write_bytes("\ufeffpath\nface.jpg\n".encode())  # Excel's "CSV UTF-8"
    proc = run_cli("predict", "--modality", "image", "--json", "--manifest", str(images))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] == "happy"
    texts = tmp_path / "texts.csv"
    texts.write_bytes("\ufefftext,label\nI am terrified of the dark,fear\nI miss her so much,sad\n".encode())
    proc = run_cli("evaluate", "--modality", "text", "--manifest", str(texts), "--compact")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 2


def test_plain_output_is_one_escaped_line_per_input(tmp_path):
    import os
    face = tmp_path / "bad\udcffname.jpg"  # the byte 0xff: not UTF-8
    face.write_bytes((ROOT / "examples" / "astronaut.jpg").read_bytes())
    missing = tmp_path / "gone\udcfe.jpg"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # strict: a raw undecodable byte would stop the batch
    proc = run_cli("predict", "--modality", "image", str(face), str(missing), "examples/astronaut.jpg", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        [str(tmp_path / "bad\\udcffname.jpg"), "happy"], [str(tmp_path / "gone\\udcfe.jpg"), "ERROR"],
        ["examples/astronaut.jpg", "happy"]]

    proc = run_cli("predict", "--modality", "text", "I love you\rI HATE YOU", "\x1b[2K\x1b[1Gspoofed", "two\nlines")
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == [
        "I love you\\rI HATE YOU", "\\x1b[2K\\x1b[1Gspoofed", "two\\nlines"]
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout


def test_out_that_is_an_input_or_the_manifest_is_refused_before_it_is_written(tmp_path):
    photo = tmp_path / "victim.jpg"
    photo.write_bytes((ROOT / "examples" / "astronaut.jpg").read_bytes())
    original = photo.read_bytes()
    proc = run_cli("predict", "--modality", "image", str(photo), "--out", str(tmp_path / "." / "victim.jpg"))
    assert proc.returncode == 2 and "--out" in proc.stderr and "is also an input" in proc.stderr
    assert photo.read_bytes() == original

    manifest = tmp_path / "texts.csv"
    manifest.write_text("text\nI am happy\n")
    (tmp_path / "link.csv").symlink_to(manifest)
    for out in (manifest, tmp_path / "link.csv"):
        proc = run_cli("predict", "--modality", "text", "--manifest", str(manifest), "--out", str(out))
        assert proc.returncode == 2 and "is also an input" in proc.stderr
        assert manifest.read_text() == "text\nI am happy\n"
    images = tmp_path / "images.csv"
    images.write_text("path\nvictim.jpg\n")  # a path the manifest lists
    proc = run_cli("predict", "--modality", "image", "--manifest", str(images), "--out", str(photo))
    assert proc.returncode == 2 and "is also an input" in proc.stderr
    assert photo.read_bytes() == original
