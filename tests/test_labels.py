import pytest

from emotion_app.core.labels import (
    LABELS,
    canonical,
    from_ckplus_id,
    from_cremad_filename,
    from_emodb_filename,
    from_enterface_filename,
    from_fer2013_id,
    from_mead_filename,
    from_ravdess_filename,
    from_tess_filename,
)


def test_order_is_canonical():
    assert LABELS == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@pytest.mark.parametrize("raw,expected", [
    ("anger", "angry"), ("Joy", "happy"), ("love", "happy"), ("calm", "neutral"),
    ("sadness", "sad"), ("fearful", "fear"), ("surprised", "surprise"), ("disgusted", "disgust"),
    ("pleasant surprise", "surprise"), ("pleasant_surprise", "surprise"), ("ps", "surprise"),
    ("happiness", "happy"), ("neutral", "neutral"),
])
def test_synonyms(raw, expected):
    assert canonical(raw) == expected


@pytest.mark.parametrize("raw", ["boredom", "contempt", "shame", "guilt"])
def test_labels_without_a_class_are_dropped(raw):
    assert canonical(raw) is None


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="unknown emotion label 'happi'"):
        canonical("happi")


def test_file_name_conventions():
    assert from_ravdess_filename("Actor_02/03-01-02-01-01-01-02.flac") == "neutral"  # calm
    assert from_ravdess_filename("03-01-08-02-02-01-12.wav") == "surprise"
    assert from_cremad_filename("1001_DFA_ANG_XX.mp4") == "angry"
    assert from_cremad_filename("1091_TIE_NEU_XX.wav") == "neutral"
    assert from_emodb_filename("03a01Fa.wav") == "happy"
    assert from_emodb_filename("03a01La.wav") is None  # boredom
    assert from_tess_filename("OAF_back_ps.wav") == "surprise"
    assert from_enterface_filename("s1_di_2.avi") == "disgust"
    assert from_mead_filename("M030_front_surprised_level3_001.mp4") == "surprise"
    assert from_fer2013_id(6) == "neutral"
    assert from_ckplus_id(2) is None


def test_malformed_file_names_are_rejected():
    with pytest.raises(ValueError):
        from_ravdess_filename("clip.wav")
