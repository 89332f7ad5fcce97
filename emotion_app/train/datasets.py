"""Readers for the shared datasets, mapped onto the canonical labels.

The data lives outside the repository (``../shared/data`` or ``$EMOTION_DATA``) and is
never copied into it; these functions read it in place. Decoded images are cached in
``.devcache/`` (never committed).
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from ..core.labels import LABEL_TO_ID, canonical
from ..core.paths import ROOT

log = logging.getLogger(__name__)
CACHE = ROOT / ".devcache"
FER_VALIDATION = "fer2013_publictest"
# One RAVDESS actor the shipped speech models never train on, so that tests can check them
# on an unseen voice (cross-validation still uses every speaker).
SANITY_SPEAKERS = ("ravdess-20",)


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

# Each corpus' licence as the dataset states it (``../shared/data``'s README): every card
# names the licences of the data its model learnt from (``training.licences`` in metrics.json).
DATA_LICENCES = {
    "carer": "CARER (Saravia et al. 2018): research and educational use",
    "goemotions": "GoEmotions (Demszky et al. 2020): Apache-2.0 repository, Google's dataset terms",
    "meld": "MELD (Poria et al. 2019): GPL-3.0 repository",
    "xed": "XED (Öhman et al. 2020): CC BY 4.0",
    "fer2013": "FER-2013 (Goodfellow et al. 2013): ICML 2013 challenge data, research use",
    "rafdb": "RAF-DB (Li et al. 2017): research use only (RAF-DB agreement)",
    "ravdess": "RAVDESS (Livingstone & Russo 2018): CC BY-NC-SA 4.0",
    "emodb": "Berlin EmoDB (Burkhardt et al. 2005): free for research",
    "nemo": "nEMO (Christop 2024): CC BY-NC-SA 4.0",
    "ased": "ASED (Retta et al. 2023): no licence stated by the authors, research use",
}


def licences(*corpora: str) -> list[str]:
    return [DATA_LICENCES[corpus] for corpus in corpora]


TEXT_LICENCES = licences("carer", "goemotions", "meld")

# The text models' validation set (their fusion weight): GoEmotions dev, the broadest of
# the three (Reddit comments on every topic, 4946 rows; CARER is tweets of six emotions
# and MELD one sitcom).
TEXT_VALIDATION = "goemotions_dev"


def text_split(corpus: str, split: str) -> tuple[list[str], list[int]]:
    """``split`` is 'train' or 'dev' (CARER's val, GoEmotions' dev, MELD's dev)."""
    train, dev, text_col, label_col = TEXT_SPLITS[corpus]
    return _rows(data_root() / (train if split == "train" else dev), text_col, label_col)


XED_FILE = "text/xed/en.csv"
# XED has no dev or test split. This share of its lines is held back from every training
# mixture as a test set of subtitle lines; lines are assigned by a hash of their text, so
# the many repeated lines ("Yes.", "What?") all fall on the same side and the split never
# changes with a run's seed.
XED_HELDOUT_SHARE = 0.2


def _held_back(text: str) -> bool:
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16) / 16 ** 8 < XED_HELDOUT_SHARE


def xed_split(split: str) -> tuple[list[str], list[list[int]]]:
    """XED English subtitle lines of ``split`` ('train' or 'heldout'), each with all its
    label ids, the annotators' first one first (multi-label lines are ~9%)."""
    texts, labels = [], []
    with open(data_root() / XED_FILE, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["text"].strip() and _held_back(row["text"]) == (split == "heldout"):
                texts.append(row["text"])
                labels.append([LABEL_TO_ID[canonical(x)] for x in row["labels"].split(";")])
    return texts, labels


def load_fer(split: str) -> tuple[np.ndarray, np.ndarray]:
    """FER-2013 ``train`` or ``publictest`` as uint8 (N, 48, 48) faces and label ids."""
    cache = CACHE / "face" / f"fer2013-{split}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["images"], z["labels"]
    from PIL import Image
    root = data_root() / "face" / "fer2013"
    with open(root / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    log.info("decoding %d FER-2013 %s images (cached afterwards)", len(rows), split)
    images = np.stack([np.asarray(Image.open(root / r["file"]).convert("L")) for r in rows])
    labels = np.array([LABEL_TO_ID[canonical(r["label"])] for r in rows], dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=images, labels=labels)
    return images, labels


SPEAKER_COLUMN = {"ravdess": "actor", "emodb": "speaker", "nemo": "speaker", "ased": "speaker"}


def speech_corpus(corpora: tuple[str, ...] = ("ravdess", "emodb")) -> list[dict]:
    """Every usable clip of ``corpora``, in order: path, label id, speaker ("ravdess-02",
    "emodb-03"), corpus and sex. Labels without a class (EmoDB's boredom) are dropped."""
    root = data_root() / "speech"
    items = []
    for corpus in corpora:
        with open(root / corpus / "labels.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                label = canonical(row["emotion"])
                if label is not None:
                    items.append({"path": str(root / corpus / row["file"]), "label": LABEL_TO_ID[label],
                                  "speaker": f"{corpus}-{row[SPEAKER_COLUMN[corpus]]}", "corpus": corpus,
                                  "sex": row.get("sex", "")})
    return items


RAF_VAL_FRACTION = 0.10
RAF_SPLIT_SEED = 20240601  # fixed: the held-out tenth never changes with a run's seed
RAF_SIZE = 100  # RAF-DB's aligned faces are 100x100 colour


def load_raf() -> tuple[np.ndarray, np.ndarray]:
    """RAF-DB train: uint8 (N, 100, 100, 3) RGB faces and label ids (its test split is
    withheld; ``raf_split`` holds a tenth of train back for validation)."""
    cache = CACHE / "face" / "rafdb-train.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["images"], z["labels"]
    from PIL import Image
    root = data_root() / "face" / "rafdb"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    log.info("decoding %d RAF-DB faces (cached afterwards)", len(rows))
    images = []
    for row in rows:
        with Image.open(root / row["file"]) as im:
            im = im.convert("RGB")
            images.append(np.asarray(im if im.size == (RAF_SIZE, RAF_SIZE) else im.resize((RAF_SIZE, RAF_SIZE),
                                                                                          Image.BILINEAR)))
    labels = np.array([LABEL_TO_ID[canonical(row["label"])] for row in rows], dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=np.stack(images), labels=labels)
    return np.stack(images), labels


def raf_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, validation) indices of RAF-DB train, the same for every run."""
    rng = np.random.default_rng(RAF_SPLIT_SEED)
    train, val = [], []
    for c in range(int(labels.max()) + 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(RAF_VAL_FRACTION * len(idx)))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
