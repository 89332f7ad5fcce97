import numpy as np
import pytest

from emotion_app import classify
from emotion_app.registry import create_model
from emotion_app.text_encoder import Utterance, base_model_dir, encode, load_tokenizer, parse_line, predict_dialogue

from .conftest import ROOT, needs_data


def test_default_text_model_is_the_ensemble_and_reads_clear_emotions():
    sentences = {"I am so happy today!": "happy", "I am furious with you": "angry",
                 "I'm terrified that someone is following me home": "fear",
                 "My grandmother died last night and I can't stop crying": "sad",
                 "Wow, I did not expect that at all!": "surprise"}
    results = classify("text", list(sentences))
    assert [r["label"] for r in results] == list(sentences.values())
    assert all(r["model"].startswith("text-ensemble@") for r in results)


def test_dialogue_gives_one_result_per_line_with_speakers_and_context():
    lines = (ROOT / "examples" / "dialogue.txt").read_text().splitlines()
    lines = lines[:2] + ["Ross:   "] + lines[2:] + ["no speaker on this line, just relief"]
    results = predict_dialogue(lines, context_turns=2)
    assert len(results) == len(lines)
    assert "line 3" in results[2]["error"] and "empty" in results[2]["error"]
    ok = [r for r in results if "error" not in r]
    assert [r["speaker"] for r in ok] == ["Ross", "Rachel", "Ross", "Rachel", None]
    assert [r["context_turns"] for r in ok] == [0, 1, 2, 2, 2]  # the empty line is no context
    assert ok[0]["text"] == "I got the tickets!" and ok[3]["label"] == "happy"


def test_context_reaches_the_encoder_but_not_the_tfidf_member():
    text = Utterance("Oh, really?", ["My dad just died.", "I'm so sorry."])
    tfidf, minilm = create_model("text-tfidf-lr"), create_model("text-minilm")
    np.testing.assert_allclose(tfidf.predict_proba([text]), tfidf.predict_proba(["Oh, really?"]))
    assert not np.allclose(minilm.predict_proba([text]), minilm.predict_proba(["Oh, really?"]), atol=1e-3)


def test_encoding_keeps_the_utterance_whole_and_drops_the_oldest_context():
    tokenizer = load_tokenizer(base_model_dir())
    batch = encode(tokenizer, ["happy birthday"], ["one two three four five six"], max_tokens=8)
    ids = batch["input_ids"][0].tolist()
    assert tokenizer.decode(ids) == "[CLS] happy birthday [SEP] four five six [SEP]"
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_speaker_parsing_leaves_times_and_urls_alone():
    assert parse_line("Dr. Green: Sit down.") == ("Dr. Green", "Sit down.")
    assert parse_line("12:30 and still waiting") == (None, "12:30 and still waiting")
    assert parse_line("see https://example.org") == (None, "see https://example.org")


def test_negative_context_turns_is_refused():
    with pytest.raises(ValueError, match="context_turns"):
        predict_dialogue(["A: hi"], context_turns=-1)


@needs_data
def test_minilm_and_ensemble_are_far_above_chance_on_carer_validation():
    """Majority class is ~44% of CARER val; the card reports ~95% for the full split."""
    from training.data import text_split
    texts, y = text_split("carer", "dev")
    texts, y = texts[:300], np.asarray(y[:300])
    for model_id, floor in (("text-minilm", 0.88), ("text-ensemble", 0.85)):
        accuracy = (create_model(model_id).predict_proba(texts).argmax(1) == y).mean()
        assert accuracy > floor, (model_id, accuracy)
