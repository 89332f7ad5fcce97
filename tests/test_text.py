import pytest

from emotion_app import classify
from emotion_app.core.errors import InputError
from emotion_app.core.labels import LABELS
from emotion_app.core.metrics import classification_metrics
from emotion_app.models.registry import create_model, get_entry
from emotion_app.pipelines.text import MAX_CHARS, prepare_text

from .conftest import needs_data


def test_empty_and_whitespace_are_errors_that_do_not_stop_the_batch():
    results = classify("text", ["", "  \n ", "I love this so much"], model="text-tfidf-lr")
    assert "empty text" in results[0]["error"] and "empty text" in results[1]["error"]
    assert results[2]["label"] == "happy"


def test_long_text_is_truncated_with_a_notice():
    text, notes = prepare_text("so happy " * 1000)
    assert len(text) == MAX_CHARS and any("truncated" in n for n in notes)


def test_non_english_and_emoji_get_a_prediction_and_a_note():
    german, emoji = classify("text", ["Ich bin heute sehr traurig und allein", "😡😡😡"])
    assert german["label"] in LABELS and any("English" in n for n in german["notes"])
    assert emoji["label"] in LABELS and any("emoji" in n for n in emoji["notes"])


def test_prepare_text_rejects_none():
    with pytest.raises(InputError):
        prepare_text(None)


@needs_data
def test_loaded_tfidf_reproduces_its_card():
    """Guards the save/load round trip: the shipped weights must score what the card says."""
    from emotion_app.train.datasets import text_split
    texts, y = text_split("carer", "dev")
    model = create_model("text-tfidf-lr")
    measured = classification_metrics(y, model.predict_proba(texts).argmax(1))["accuracy"]
    card = get_entry("text-tfidf-lr").metrics["evaluations"]["carer_dev"]["accuracy"]
    assert measured == pytest.approx(card, abs=1e-3)
    assert measured > 0.8
