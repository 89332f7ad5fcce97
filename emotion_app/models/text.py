"""The TF-IDF + logistic-regression text model."""
from __future__ import annotations

import json

import numpy as np

from .base import Model, ModelEntry
from .registry import register_architecture


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
