"""Train text models: ``python -m training.text tfidf``.

The TF-IDF model trains on CARER + GoEmotions-Ekman + MELD train splits together with
balanced class weights: CARER has no neutral or disgust, GoEmotions and MELD are
neutral-heavy, so balancing keeps rare classes (disgust, fear) from being ignored.
Each corpus' dev split is scored separately, because one pooled number would hide
how the model does on dialogue (MELD) versus tweets (CARER).
"""
from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from emotion_app.core.labels import LABELS
from emotion_app.core.metrics import classification_metrics
from emotion_app.core.paths import BUNDLED_WEIGHTS
from emotion_app.models.cards import write_model_folder
from emotion_app.models.text import TfidfLogReg, build_vectorizer
from emotion_app.train.datasets import TEXT_LICENCES, TEXT_SPLITS, text_split
from emotion_app.train.datasets import TEXT_VALIDATION as VALIDATION

log = logging.getLogger(__name__)

TFIDF_VECTORIZERS = [
    {"analyzer": "word", "ngram_range": [1, 2], "min_df": 2, "max_features": 120000, "token_pattern": r"(?u)\b\w+\b|[^\w\s]"},
    {"analyzer": "char_wb", "ngram_range": [2, 5], "min_df": 3, "max_features": 120000},
]


def evaluate_corpora(model) -> dict:
    """Metrics on each corpus' dev split."""
    out = {}
    for corpus in TEXT_SPLITS:
        texts, y = text_split(corpus, "dev")
        out[f"{corpus}_dev"] = classification_metrics(y, model.predict_proba(texts).argmax(1))
    return out


def train_tfidf(seed: int = 0, c: float = 2.0) -> dict:
    from safetensors.numpy import save_file
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    texts, y = [], []
    for corpus in TEXT_SPLITS:
        t, l = text_split(corpus, "train")
        texts += t
        y += l
        log.info(f"{corpus}: {len(t)} training rows")
    start = time.time()
    vectorizers = []
    for params in TFIDF_VECTORIZERS:
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        vectorizers.append(build_vectorizer(params))
    features = hstack([v.fit_transform(texts) for v in vectorizers]).tocsr()
    log.info(f"{features.shape[1]} features; fitting logistic regression (C={c})")
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(features, np.asarray(y))
    # Scored with the fp16 coefficients that ship, not the float64 ones that were fitted.
    coef = np.ascontiguousarray(clf.coef_, dtype=np.float16)
    model = TfidfLogReg(vectorizers, coef.astype(np.float32), clf.intercept_.astype(np.float32))
    evaluations = evaluate_corpora(model)
    for name, m in evaluations.items():
        log.info(f"{name}: accuracy {m['accuracy']:.4f} weighted F1 {m['weighted_f1']:.4f}")
    config = {"id": "text-tfidf-lr", "version": "1", "modality": "text", "architecture": "tfidf-logreg",
              "labels": list(LABELS), "vectorizers": TFIDF_VECTORIZERS, "default": False}
    metrics = {"evaluations": evaluations, "validation": VALIDATION, "headline": VALIDATION,
               "training": {"licences": TEXT_LICENCES,
                            "corpora": list(TEXT_SPLITS), "rows": len(texts), "C": c, "seed": seed,
                            "class_weight": "balanced", "seconds": round(time.time() - start, 1)}}
    # safetensors.numpy writes Fortran-ordered arrays scrambled: keep every tensor C-ordered.
    tensors = {"coef": coef, "intercept": np.ascontiguousarray(clf.intercept_, dtype=np.float32)}
    tensors.update({f"idf_{i}": np.ascontiguousarray(v.idf_, dtype=np.float32) for i, v in enumerate(vectorizers)})
    vocab = [{term: int(idx) for term, idx in v.vocabulary_.items()} for v in vectorizers]
    folder = write_model_folder(
        BUNDLED_WEIGHTS / config["id"], config, metrics,
        "Word 1-2-gram and character 2-5-gram TF-IDF with a class-balanced logistic regression, "
        "trained on CARER + GoEmotions-Ekman + MELD train splits. Fast, and a different view of "
        "the text from the fine-tuned encoder it is ensembled with.",
        files={"model.safetensors": lambda p: save_file(tensors, str(p)),
               "vocab.json": lambda p: p.write_text(json.dumps(vocab, ensure_ascii=False))})
    log.info(f"wrote {folder}")
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.text", description=__doc__)
    sub = parser.add_subparsers(dest="member", required=True)
    p = sub.add_parser("tfidf", help="TF-IDF + logistic regression (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--C", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.member == "tfidf":
        train_tfidf(seed=args.seed, c=args.C)


if __name__ == "__main__":
    main()
