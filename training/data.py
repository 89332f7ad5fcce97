"""Readers for the shared datasets, mapped onto the canonical labels.

The data lives outside the repository (``../shared/data`` or ``$EMOTION_DATA``) and is
never copied into it; these functions read it in place.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from emotion_app.labels import LABEL_TO_ID, canonical
from emotion_app.registry import ROOT


def data_root() -> Path:
    root = Path(os.environ.get("EMOTION_DATA", ROOT.parent / "shared" / "data"))
    if not root.is_dir():
        raise FileNotFoundError(f"shared data not found at {root}; set EMOTION_DATA")
    return root


def _rows(path: Path, text_col: str, label_col: str) -> tuple[list[str], list[int]]:
    """Texts and label ids from a CSV, dropping labels with no canonical class."""
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = canonical(row[label_col])
            if label is not None and row[text_col].strip():
                texts.append(row[text_col])
                labels.append(LABEL_TO_ID[label])
    return texts, labels


TEXT_SPLITS = {
    # name: (train file, dev file, text column, label column)
    "carer": ("text/carer/train.csv", "text/carer/val.csv", "text", "label"),
    "goemotions": ("text/goemotions_ekman/train.csv", "text/goemotions_ekman/dev.csv", "text", "label"),
    "meld": ("text/meld/train_sent_emo.csv", "text/meld/dev_sent_emo.csv", "Utterance", "Emotion"),
}


def text_split(corpus: str, split: str) -> tuple[list[str], list[int]]:
    """``split`` is 'train' or 'dev' (CARER's val, GoEmotions' dev, MELD's dev)."""
    train, dev, text_col, label_col = TEXT_SPLITS[corpus]
    return _rows(data_root() / (train if split == "train" else dev), text_col, label_col)
