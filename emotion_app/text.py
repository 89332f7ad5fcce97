"""Text emotion: input cleaning, the TF-IDF + logistic-regression model, batched prediction."""
from __future__ import annotations

import json
import re
import unicodedata

import numpy as np

from .inputs import InputError
from .pipeline import error_result, make_result, resolve
from .registry import Model, ModelEntry, register_architecture

MAX_CHARS = 2000
BATCH = 512
_ENGLISH_HINTS = set("the a an and or but i you he she it we they is are was were be been not no to of in on "
                     "for with my your this that what so very just can't don't i'm it's".split())


def prepare_text(text) -> tuple[str, list[str]]:
    """Normalise one text and say what was done to it; empty text is an InputError."""
    if text is None or not str(text).strip():
        raise InputError("empty text: nothing to classify")
    text = unicodedata.normalize("NFC", str(text)).strip()
    notes = []
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        notes.append(f"text truncated to its first {MAX_CHARS} characters")
    words = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text.lower())
    if words and not any(w in _ENGLISH_HINTS for w in words) and (
            len(words) >= 3 or any(not w.isascii() for w in words)):
        notes.append("this does not look like English; the models are trained on English text")
    if not words:
        notes.append("no words found (only symbols or emoji); the prediction rests on them alone")
    return text, notes


class TfidfLogReg(Model):
    """Word and character n-gram TF-IDF, then a multinomial logistic regression."""

    def __init__(self, vectorizers, coef: np.ndarray, intercept: np.ndarray):
        self.vectorizers, self.coef, self.intercept = vectorizers, coef, intercept

    def features(self, texts):
        from scipy.sparse import hstack
        return hstack([v.transform(texts) for v in self.vectorizers]).tocsr()

    def predict_proba(self, texts) -> np.ndarray:
        logits = self.features(texts) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def build_vectorizer(params: dict, vocabulary=None, idf=None):
    """The same TfidfVectorizer for training and loading; loading fixes vocabulary and idf."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    vec = TfidfVectorizer(lowercase=True, sublinear_tf=True, strip_accents="unicode",
                          vocabulary=vocabulary, **params)
    if idf is not None:
        vec.idf_ = idf
    return vec


@register_architecture("tfidf-logreg")
def load_tfidf(entry: ModelEntry) -> TfidfLogReg:
    from safetensors.numpy import load_file
    tensors = load_file(str(entry.folder / "model.safetensors"))
    vocab = json.loads((entry.folder / "vocab.json").read_text())
    vectorizers = []
    for i, params in enumerate(entry.config["vectorizers"]):
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        vectorizers.append(build_vectorizer(params, vocab[i], tensors[f"idf_{i}"].astype(np.float64)))
    return TfidfLogReg(vectorizers, tensors["coef"].astype(np.float32), tensors["intercept"].astype(np.float32))


def predict(texts: list, model: str | None = None, dialogue: bool = False, **_) -> list[dict]:
    """Classify a batch of texts; empty ones become error results and the rest go on.
    ``dialogue=True``: the texts are the turns of one conversation, in order."""
    if dialogue:
        from .text_encoder import predict_dialogue
        return predict_dialogue(texts, model)
    clf = resolve("text", model)
    results: list[dict | None] = [None] * len(texts)
    ok = []
    for i, text in enumerate(texts):
        try:
            prepared, notes = prepare_text(text)
        except InputError as exc:
            results[i] = error_result(text, exc)
            continue
        ok.append((i, prepared, notes + clf.reading_notes(prepared)))
    for start in range(0, len(ok), BATCH):
        chunk = ok[start:start + BATCH]
        probs = clf.predict_proba([t for _, t, _ in chunk])
        for (i, _, notes), p in zip(chunk, probs):
            results[i] = make_result(texts[i], p, clf.entry.ref, **({"notes": notes} if notes else {}))
    return results
