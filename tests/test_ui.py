import numpy as np
import orjson
import soundfile as sf
from PIL import Image

from emotion_app.app import charts
from emotion_app.app import image as image_tab
from emotion_app.app import models as models_tab
from emotion_app.app import text as text_tab
from emotion_app.app import trimodal as trimodal_tab
from emotion_app.app import video as video_tab
from emotion_app.core.labels import LABELS


def test_dialogue_gets_a_row_and_a_bar_per_turn_and_long_pastes_are_cut_with_a_note(monkeypatch):
    monkeypatch.setattr(text_tab, "MAX_DIALOGUE_LINES", 3)
    text = "Ross: I got the tickets!\n\nRachel: For tonight?\nRoss: Yes! Front row.\nRachel: I love you!"
    figure, rows, message, label, answer = text_tab.analyze_text(text, dialogue=True)
    assert [row[0] for row in rows] == ["Ross", "Rachel", "Ross"]
    assert "first 3 of 4 lines" in message and "text-dialogue@" in message
    assert len(figure.data) == 7 and list(figure.data[0].x) == [1, 2, 3]  # one stacked trace per emotion
    assert figure.data[0].customdata[1] == "Rachel: For tonight?"


def test_single_text_gets_bars_and_empty_text_a_message():
    figure, rows, message, label, answer = text_tab.analyze_text("I am so happy today!")
    assert "**happy**" in message and len(figure.data) == 1
    assert text_tab.analyze_text("   ", dialogue=True)[2].startswith("⚠️ empty text")
    figure, rows, message, label, answer = text_tab.analyze_text("   ")
    assert figure is None and rows == [] and message.startswith("⚠️ empty text")  # no "error" row in the table
    assert answer == {"input": "   ", "error": "empty text: nothing to classify"}  # the API's shape
    assert text_tab.analyze_text("", dialogue=True)[4] == [  # a dialogue's answer is a list
        {"input": "", "error": "empty text: type or paste something to classify"}]


def test_dialogue_says_which_line_was_cut():
    figure, rows, message, label, answer = text_tab.analyze_text("Ann: hi there\nBob: " + "so much to say " * 300, dialogue=True)
    assert "line 2: text truncated to its first 2000 characters" in message


def test_photo_without_a_face_says_so_and_charts_the_whole_image(tmp_path):
    path = tmp_path / "sky.png"
    Image.new("RGB", (320, 240), (40, 80, 200)).save(path)
    drawn, figure, message, label, answer = image_tab.analyze_image(str(path))
    assert message.startswith("**No face found.**") and "Trust this only" in message
    assert [trace.name for trace in figure.data] == ["whole image"]  # not an empty per-face chart


def test_unreadable_upload_clears_the_outputs_and_is_named_by_its_file_name(tmp_path):
    upload = tmp_path / "server-upload-9c1e"  # where Gradio keeps an upload
    upload.mkdir()
    (upload / "holiday.jpg").write_bytes(b"not a picture")
    drawn, figure, message, label, answer = image_tab.analyze_image(str(upload / "holiday.jpg"))
    assert drawn is None and figure is None
    assert message.startswith("⚠️ holiday.jpg: not a readable image") and str(upload) not in message


def test_trimodal_result_keeps_saying_which_input_was_left_out(tmp_path):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(32000, dtype=np.float32), 16000)
    state, message = trimodal_tab.trimodal_inputs(None, "I just got the job, I'm so happy!", str(silence))
    figure, fused, _, label, answer = trimodal_tab.trimodal_fuse(state, "late", 0.5, 0.5, 0.5)
    assert fused.startswith("### Fused: **happy**")
    assert "voice left out: silence.wav: no speech detected" in fused  # under the result, not overwritten by it
    assert [trace.name for trace in figure.data] == ["text", "fused"]
    assert answer["label"] == "happy" and max(label, key=label.get) == "happy"
    assert set(answer["modalities"]) == {"text"} and "no speech detected" in answer["left_out"]["voice"]


def test_trimodal_answers_an_error_and_each_reason_when_nothing_could_be_read(tmp_path):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(32000, dtype=np.float32), 16000)
    state, plot, message, label, answer = trimodal_tab.trimodal(None, "   ", str(silence))
    assert answer == {"error": "none of the inputs could be read",
                      "left_out": {"voice": "silence.wav: no speech detected (silence or background noise only)"}}
    assert plot is None and "voice left out: silence.wav" in message
    assert trimodal_tab.trimodal(None, None, None)[4] == {"error": "no input: give an image, a text or audio",
                                                         "left_out": {}}
    state, _ = trimodal_tab.trimodal_inputs(None, "I am so happy today!", str(silence))
    answer = trimodal_tab.trimodal_fuse(state, "late", 0.0, 0.0, 0.0)[4]  # every weight at zero
    assert "weight" in answer["error"] and set(answer["left_out"]) == {"voice"}


def test_activating_a_fusion_model_says_which_method_serves_it():
    table, message = models_tab.activate("fusion-gated@1")
    assert message.startswith("`fusion-gated@1` is now the active fusion model. The Video and Tri-modal tabs serve it "
                              "when their fusion method is **gated**.")


def test_trimodal_leaves_out_a_photo_without_a_face(tmp_path):
    landscape = tmp_path / "landscape.png"
    Image.new("RGB", (320, 240), (90, 160, 60)).save(landscape)
    state, plot, message, label, answer = trimodal_tab.trimodal(str(landscape), "I am so happy today!", None)
    assert answer["left_out"] == {"face": "no face found in the photo"} and set(answer["weights"]) == {"text"}
    assert "face left out: no face found in the photo" in message


def test_a_single_speech_segment_is_drawn_as_a_span_of_time():
    probs = dict.fromkeys(LABELS, 0.0) | {"angry": 0.7, "neutral": 0.3}
    figure = charts.timeline([{"start": 0.5, "end": 3.5, "probs": probs}], "Speech segments", "voice")
    angry = next(trace for trace in figure.data if trace.name == "angry")
    assert list(angry.x) == [0.5, 3.5, None] and list(angry.y) == [0.7, 0.7, None]


def test_text_with_bytes_that_are_not_utf8_is_said_and_answered_escaped():
    text = "caf\udce9 I am happy"  # what the API gives for bytes that were not UTF-8
    for dialogue in (False, True):
        figure, rows, message, label, answer = text_tab.analyze_text(text, dialogue)
        assert message.startswith("⚠️ ") and "not valid UTF-8 text" in message
        assert r"caf\\udce9" in orjson.dumps([rows, answer]).decode()  # what Gradio sends: escaped, not refused
    assert text_tab.send_text_to_annotation(text).startswith("Not sent to annotation: not valid UTF-8 text")


def test_video_and_trimodal_without_a_method_fuse_late_and_an_unknown_one_names_the_methods(monkeypatch):
    asked = []
    monkeypatch.setattr(video_tab, "classify", lambda modality, paths, fusion, progress: asked.append(fusion)
                        or [{"input": paths[0], "error": "not analysed here"}])
    assert "not analysed here" in video_tab.analyze_video("clip.mp4", None, progress=None)[3] and asked == ["late"]
    state, plot, message, label, answer = trimodal_tab.trimodal(None, "I am so happy today!", None, None)
    assert message.startswith("### Fused: **happy**") and answer["method"] == "late"
    state, plot, message, label, answer = trimodal_tab.trimodal(None, "hi", None, "bogus")
    assert plot is None and message.startswith("⚠️ unknown fusion method 'bogus'; expected one of late, concat")


def test_a_model_card_asked_for_by_a_number_or_a_list_names_the_models():
    for model in (123, ["text-minilm"]):
        card, plot = models_tab.model_card(model)
        assert card.startswith("⚠️ unknown model") and "text-minilm@1" in card and plot is None
