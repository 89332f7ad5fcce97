"""The web API as its users call it: ``gradio_client`` against ``python app.py``. Every
analysis endpoint answers with the structured result (the CLI's ``--json`` shape) and
the top classes, in one call."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from .conftest import ROOT, app_server

EXAMPLES = ROOT / "examples"
LABELS = {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from gradio_client import Client
    data = tmp_path_factory.mktemp("api-data")
    with app_server(tmp_path_factory, EMOTION_APP_DATA=str(data)) as url:
        yield Client(url, verbose=False), data


@pytest.fixture(scope="module")
def client(served):
    return served[0]


def _top(label: dict) -> str:
    return label["label"]


def test_image_answers_boxes_per_face_probabilities_and_the_top_classes(client):
    from gradio_client import handle_file
    drawn, plot, message, label, result = client.predict(handle_file(str(EXAMPLES / "two_faces.jpg")), api_name="/image")
    assert result["face_detected"] and len(result["faces"]) == 2
    for face in result["faces"]:
        assert len(face["box"]) == 4 and set(face["probs"]) == LABELS and "uncertain" in face
    assert result["input"] == "two_faces.jpg"  # the upload's name, not the server's path
    assert _top(label) == result["label"] and "@" in result["model"]


def test_text_answers_the_result_and_a_dialogue_answers_each_turn(client):
    plot, rows, message, label, result = client.predict("I am so happy today!", False, api_name="/text")
    assert result["label"] == "happy" == _top(label) and set(result["probs"]) == LABELS
    plot, rows, message, label, results = client.predict("Ross: I got the tickets!\nRachel: For tonight?", True,
                                                         api_name="/text")
    assert [r["speaker"] for r in results] == ["Ross", "Rachel"] and all("context_turns" in r for r in results)


def test_audio_headline_is_the_fusion_of_voice_and_words(client):
    from gradio_client import handle_file
    plot, timeline, message, label, result, table = client.predict(
        handle_file(str(EXAMPLES / "speech_happy.wav")), api_name="/audio")
    assert result["segments"] and result["transcript"]
    assert _top(label) == result["fused"]["label"]  # the headline is the fused result, not the voice alone
    assert message.startswith(f"### **{result['fused']['label']}**") and "(voice and words)" in message
    # each speech segment with its own words, and their emotion fused with the voice's
    said = [s for s in result["segments"] if s.get("transcript")]
    assert said and all(set(s) >= {"text", "fused"} for s in said)
    assert " ".join(s["transcript"] for s in said) == result["transcript"]
    assert [row[1] for row in table["data"]] == [s.get("transcript", "") for s in result["segments"]]


def test_trimodal_is_one_call_and_leaves_out_a_photo_without_a_face(client, tmp_path):
    from gradio_client import handle_file
    landscape = tmp_path / "landscape.png"
    Image.new("RGB", (320, 240), (90, 160, 60)).save(landscape)
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(32000, dtype=np.float32), 16000)
    plot, message, label, result = client.predict(handle_file(str(landscape)), "I just got the job, I'm so happy!",
                                                  handle_file(str(silence)), "late", 0.3, 0.3, 0.3,
                                                  api_name="/trimodal")
    assert result["label"] == "happy" == _top(label) and set(result["modalities"]) == {"text"}
    assert result["left_out"]["face"] == "no face found in the photo"
    assert "silence.wav: no speech detected" in result["left_out"]["voice"]


def test_a_bad_upload_answers_a_structured_error(client, tmp_path):
    from gradio_client import handle_file
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"not a picture")
    drawn, plot, message, label, result = client.predict(handle_file(str(broken)), api_name="/image")
    assert not label and result["input"] == "holiday.jpg" and "not a readable image" in result["error"]


def test_a_model_published_after_start_up_can_be_shown_and_activated(served):
    client, data = served
    folder = data / "weights" / "text-tfidf-lr-copy-v1"
    shutil.copytree(ROOT / "weights" / "text-tfidf-lr", folder)  # as a fine-tune publishes one
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "id": "text-tfidf-lr-copy"}))
    card, plot = client.predict("text-tfidf-lr-copy@1", api_name="/model_card")
    assert "text-tfidf-lr" in card and "⚠️" not in card
    table, message = client.predict("text-tfidf-lr-copy@1", api_name="/activate")
    assert message == "`text-tfidf-lr-copy@1` is now the active text model."
    active = [row for row in table["data"] if row[4] == "✓" and row[1] == "text"]
    assert [row[0] for row in active] == ["text-tfidf-lr-copy@1"]
    assert client.predict("no-such-model", api_name="/model_card")[0].startswith("⚠️ unknown model")
