"""Canonical emotion classes and every dataset's mapping onto them.

One place decides what each corpus' label means, so training, evaluation and the
annotation export agree. Labels with no canonical class (boredom, contempt, shame,
guilt) map to ``None`` and are dropped by callers: they are not forced into a
neighbouring class because that would teach the models a wrong boundary.
"""
from __future__ import annotations

import re
from pathlib import Path

LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
LABEL_TO_ID = {label: i for i, label in enumerate(LABELS)}

# Spelling variants seen across corpora, all lower-case. A value of None means
# "no canonical class: drop this example".
_SYNONYMS = {
    "angry": "angry", "anger": "angry", "ang": "angry", "an": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "fea": "fear", "fe": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "hap": "happy", "ha": "happy",
    "love": "happy",  # CARER: love is a positive, high-valence state
    "neutral": "neutral", "neu": "neutral", "calm": "neutral",  # RAVDESS calm -> neutral
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise", "su": "surprise",
    "pleasant surprise": "surprise", "pleasant_surprise": "surprise", "ps": "surprise",  # TESS
    # No canonical class: dropped where they occur.
    "boredom": None, "bored": None, "contempt": None, "shame": None, "guilt": None,
}


def canonical(label: str) -> str | None:
    """Map any dataset's label to a canonical class, or None if it has none.

    Raises ValueError for a label we have never seen, so a typo in a manifest is
    reported instead of silently dropped.
    """
    key = str(label).strip().lower().replace("-", " ")
    key = re.sub(r"\s+", " ", key)
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    if key.replace(" ", "_") in _SYNONYMS:
        return _SYNONYMS[key.replace(" ", "_")]
    raise ValueError(f"unknown emotion label {label!r}; expected one of {', '.join(LABELS)}")


# --- datasets whose labels live in file names -------------------------------------

_RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                     "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised"}
_EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear",
                   "F": "happiness", "T": "sadness", "N": "neutral"}
_FER2013_IDS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_CKPLUS_IDS = {0: "neutral", 1: "angry", 2: "contempt", 3: "disgust", 4: "fear",
               5: "happy", 6: "sad", 7: "surprise"}
# ISEAR's seven: joy, fear, anger, sadness, disgust, shame, guilt (shame/guilt dropped).


def from_ravdess_filename(name: str) -> str | None:
    """RAVDESS: modality-channel-emotion-intensity-statement-repetition-actor."""
    parts = Path(name).stem.split("-")
    if len(parts) != 7 or parts[2] not in _RAVDESS_EMOTIONS:
        raise ValueError(f"not a RAVDESS file name: {name!r}")
    return canonical(_RAVDESS_EMOTIONS[parts[2]])


def from_cremad_filename(name: str) -> str | None:
    """CREMA-D: actor_sentence_EMOTION_level, e.g. 1001_DFA_ANG_XX."""
    parts = Path(name).stem.split("_")
    if len(parts) < 3:
        raise ValueError(f"not a CREMA-D file name: {name!r}")
    return canonical(parts[2])


def from_emodb_filename(name: str) -> str | None:
    """EmoDB: speaker(2) text(3) emotion letter (German initial) version, e.g. 03a01Fa."""
    stem = Path(name).stem
    if len(stem) < 6 or stem[5] not in _EMODB_EMOTIONS:
        raise ValueError(f"not an EmoDB file name: {name!r}")
    return canonical(_EMODB_EMOTIONS[stem[5]])


def from_tess_filename(name: str) -> str | None:
    """TESS: OAF_word_emotion / YAF_word_emotion, 'ps' is pleasant surprise."""
    return canonical(Path(name).stem.split("_")[-1])


def from_enterface_filename(name: str) -> str | None:
    """eNTERFACE'05: s<subject>_<an|di|fe|ha|sa|su>_<n>."""
    parts = Path(name).stem.split("_")
    if len(parts) < 2:
        raise ValueError(f"not an eNTERFACE'05 file name: {name!r}")
    return canonical(parts[1])


def from_mead_filename(name: str) -> str | None:
    """MEAD: <actor>_<view>_<emotion>_level<k>_<n> (contempt is dropped)."""
    parts = Path(name).stem.split("_")
    if len(parts) < 3:
        raise ValueError(f"not a MEAD file name: {name!r}")
    return canonical(parts[2])


def from_fer2013_id(index: int) -> str:
    """FER-2013 CSV's integer emotion column (0=Angry ... 6=Neutral)."""
    return canonical(_FER2013_IDS[int(index)])


def from_ckplus_id(index: int) -> str | None:
    """CK+ emotion codes; 2 (contempt) has no canonical class."""
    return canonical(_CKPLUS_IDS[int(index)])
