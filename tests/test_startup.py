"""Start-up never dies on a damaged data folder: the prediction tabs serve, the broken
part says what is wrong, and nothing is recreated over the files that are there."""
from __future__ import annotations

import json
import re
import urllib.request

from .conftest import app_server

GARBAGE = b"this is not a database\n" * 40


def test_the_app_starts_and_predicts_with_a_damaged_store_job_table_and_choices(tmp_path_factory):
    from gradio_client import Client
    data = tmp_path_factory.mktemp("damaged-data")
    (data / "annotations.sqlite3").write_bytes(GARBAGE)
    (data / "finetune").mkdir()
    (data / "finetune" / "jobs.sqlite3").write_bytes(GARBAGE)
    (data / "active.json").write_text("{not json")
    with app_server(tmp_path_factory, EMOTION_APP_DATA=str(data)) as url:
        client = Client(url, verbose=False)
        plot, rows, message, label, result = client.predict("I am so happy today!", False, api_name="/text")
        assert result["label"] == "happy" and result["model"] == "text-ensemble@1"  # the bundled default
        config = json.loads(urllib.request.urlopen(f"{url}/config", timeout=30).read())
        shown = json.dumps(config)
        assert "Annotation is unavailable" in shown and "Fine-tuning is unavailable" in shown
        assert "file is not a database" in shown
    assert (data / "annotations.sqlite3").read_bytes() == GARBAGE  # kept for whoever repairs it
    assert (data / "finetune" / "jobs.sqlite3").read_bytes() == GARBAGE
    assert (data / "active.json").read_text() == "{not json"


def test_markup_in_a_queue_name_or_a_file_name_is_shown_as_text(tmp_path):
    from PIL import Image

    from emotion_app.annotation import AnnotationStore
    from emotion_app.app import annotate
    store = AnnotationStore(tmp_path / "store")
    picture = tmp_path / "<img src=x onerror=alert(1)>.png"
    Image.new("RGB", (64, 64), (10, 100, 50)).save(picture)
    queue = "<a href='https://example.org'>click</a>"
    message, _ = annotate.import_files(store, queue, [str(picture), str(tmp_path / "<b>gone.png")], 1)
    state = annotate.start(store, queue, "alice", None)
    for shown in (message, state[1], state[6]):  # the import message, the progress line, the item line
        assert not re.search(r"(?<!\\)<", shown), shown  # every < escaped: shown, not rendered
    assert r"\<a href" in message and r"\<b\>gone" in message and r"\<img" in state[6]
