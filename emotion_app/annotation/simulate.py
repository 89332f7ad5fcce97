"""``python -m emotion_app.annotation simulate``: does serving uncertain items first make
each label worth more? Measured, on labelled data the model never trained on.

From a labelled pool (text: XED English subtitles, single-label lines; image: RAF-DB
photos read by ``image-mobilenetv2``, which trained on FER-2013 only) the simulation
reveals ``batch`` labels per round, chosen by a strategy (``priority``: the same
functions the queues are served by), fine-tunes, and scores macro-F1 and accuracy on a
fixed evaluation set drawn from the same corpus. Each round re-reads the pool with the
fine-tuned model, as re-scoring a queue does after a fine-tune is activated.

Fine-tuning here trains a correction on the frozen model's embeddings: the logits are
``log p_model + W e + b``, with W and b starting at zero, so round 0 is the shipped model
itself and a label can only move it from there. Only that head is trained (the encoder
is frozen), which keeps a run to minutes on a 2-core CPU; embeddings and probabilities
are computed once and cached under ``--out``.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.labels import LABELS
from ..models.registry import create_model
from ..train.datasets import LABEL_TO_ID, canonical, data_root
from .priority import DIVERSITY, ENTROPY, MARGIN, priorities

log = logging.getLogger(__name__)

SIM_STRATEGIES = {"random": None, "uncertainty": MARGIN, "entropy": ENTROPY, "diversity": DIVERSITY}
MODELS = {"text": "text-minilm", "image": "image-mobilenetv2"}  # the served ensembles' members with embeddings
POOL, EVALUATION = 2000, 1000  # items the strategy picks from; items every round is scored on
HEAD_STEPS, HEAD_LR, HEAD_DECAY = 300, 0.01, 1e-3  # the correction head's full-batch Adam training
EMBED_BATCH = 64


@dataclass
class Corpus:
    name: str
    inputs: list  # texts or RGB arrays
    labels: np.ndarray


def _xed(rng: np.random.Generator, n: int) -> Corpus:
    with open(data_root() / "text" / "xed" / "en.csv", newline="", encoding="utf-8") as f:
        rows = [(r["text"], canonical(r["labels"])) for r in csv.DictReader(f)
                if ";" not in r["labels"] and len(r["text"].split()) >= 3]  # single-label lines with a few words
    rows = [rows[i] for i in rng.permutation(len(rows))[:n]]
    return Corpus("XED en (single-label lines of 3+ words)", [t for t, _ in rows],
                  np.array([LABEL_TO_ID[label] for _, label in rows]))


def _raf(rng: np.random.Generator, n: int) -> Corpus:
    from PIL import Image
    root = data_root() / "face" / "rafdb"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = [rows[i] for i in rng.permutation(len(rows))[:n]]
    images = []
    for row in rows:
        with Image.open(root / row["file"]) as im:
            images.append(np.asarray(im.convert("RGB")))
    return Corpus("RAF-DB train (aligned photos)", images, np.array([LABEL_TO_ID[canonical(r["label"])] for r in rows]))


CORPORA = {"text": _xed, "image": _raf}


def features(modality: str, out: Path, seed: int = 0) -> tuple[Corpus, np.ndarray, np.ndarray]:
    """The sampled corpus, the model's probabilities and embeddings for it (cached)."""
    corpus = CORPORA[modality](np.random.default_rng(seed), POOL + EVALUATION)
    cache = out / f"{modality}-{MODELS[modality]}-{seed}-{POOL + EVALUATION}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return corpus, z["probs"], z["embeddings"]
    from ..pipelines.base import limit_threads
    limit_threads()
    model = create_model(MODELS[modality])
    started, probs, embeddings = time.time(), [], []
    for start in range(0, len(corpus.inputs), EMBED_BATCH):
        batch = corpus.inputs[start:start + EMBED_BATCH]
        probs.append(model.calibrated_proba(batch))
        embeddings.append(model.embed(batch))
    probs, embeddings = np.concatenate(probs), np.concatenate(embeddings)
    log.info("%s: %d inputs read by %s in %.0f s", modality, len(probs), MODELS[modality], time.time() - started)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(cache, probs=probs, embeddings=embeddings)
    return corpus, probs, embeddings


def fit_correction(base_logits: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W, b of ``logits = base + x W + b`` trained on the revealed labels (cross-entropy,
    weight decay pulling back towards the model as it was)."""
    import torch
    w = torch.zeros(x.shape[1], len(LABELS), requires_grad=True)
    b = torch.zeros(len(LABELS), requires_grad=True)
    xt, bt, yt = torch.tensor(x), torch.tensor(base_logits), torch.tensor(y)
    optimiser = torch.optim.Adam([w, b], lr=HEAD_LR, weight_decay=HEAD_DECAY)
    for _ in range(HEAD_STEPS):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(bt + xt @ w + b, yt).backward()
        optimiser.step()
    return w.detach().numpy(), b.detach().numpy()


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import f1_score
    predicted = probs.argmax(axis=1)
    return {"accuracy": float((predicted == labels).mean()),
            "macro_f1": float(f1_score(labels, predicted, average="macro", labels=np.unique(labels), zero_division=0))}


def run(modality: str, strategy: str, rounds: int, batch: int, seed: int, corpus: Corpus, probs: np.ndarray,
        embeddings: np.ndarray) -> list[dict]:
    """One learning curve: the scores before any label and after each round."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(probs))
    pool, evaluation = order[:POOL], order[POOL:]
    x = (embeddings - embeddings[pool].mean(0)) / (embeddings[pool].std(0) + 1e-6)
    x = x.astype(np.float32)
    base = np.log(np.clip(probs, 1e-9, 1.0)).astype(np.float32)
    current = probs
    revealed: list[int] = []
    curve = [{"labels": 0, **_scores(probs[evaluation], corpus.labels[evaluation])}]
    for _ in range(rounds):
        left = np.setdiff1d(pool, revealed)
        if SIM_STRATEGIES[strategy] is None:
            picked = rng.choice(left, size=min(batch, len(left)), replace=False)
        else:
            score = priorities(SIM_STRATEGIES[strategy], current[left], embeddings[left])
            picked = left[np.argsort(-score, kind="stable")[:batch]]
        revealed += [int(i) for i in picked]
        w, b = fit_correction(base[revealed], x[revealed], corpus.labels[revealed])
        current = _softmax(base + x @ w + b)
        curve.append({"labels": len(revealed), **_scores(current[evaluation], corpus.labels[evaluation])})
    return curve


def simulate(modality: str, strategies: list[str], rounds: int, batch: int, seeds: int, out: Path) -> dict:
    """Curves per strategy (one per seed: the pool/evaluation split and random picks vary),
    written to ``out`` as JSON and a plotly HTML chart."""
    corpus, probs, embeddings = features(modality, out)
    curves = {s: [run(modality, s, rounds, batch, seed, corpus, probs, embeddings) for seed in range(seeds)]
              for s in strategies}
    summary = {"modality": modality, "model": MODELS[modality], "corpus": corpus.name, "pool": POOL,
               "evaluation": EVALUATION, "rounds": rounds, "batch": batch, "seeds": seeds,
               "strategies": {s: _mean_curve(runs) for s, runs in curves.items()}}
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"simulate-{modality}"
    stem.with_suffix(".json").write_text(json.dumps({**summary, "runs": curves}, indent=1))
    _chart(summary).write_html(stem.with_suffix(".html"), include_plotlyjs="cdn")
    return summary


def _mean_curve(runs: list[list[dict]]) -> list[dict]:
    points = []
    for step in zip(*runs):
        f1 = np.array([p["macro_f1"] for p in step])
        accuracy = np.array([p["accuracy"] for p in step])
        points.append({"labels": step[0]["labels"], "macro_f1": round(float(f1.mean()), 4),
                       "macro_f1_sd": round(float(f1.std()), 4), "accuracy": round(float(accuracy.mean()), 4)})
    return points


def _chart(summary: dict):
    import plotly.graph_objects as go
    figure = go.Figure()
    for strategy, points in summary["strategies"].items():
        figure.add_trace(go.Scatter(
            x=[p["labels"] for p in points], y=[p["macro_f1"] for p in points], name=strategy, mode="lines+markers",
            error_y={"type": "data", "array": [p["macro_f1_sd"] for p in points], "visible": True}))
    figure.update_layout(title=f"{summary['modality']}: {summary['model']} on {summary['corpus']} "
                               f"(mean of {summary['seeds']} seeds)",
                         xaxis_title="labels used", yaxis_title="macro-F1 on the evaluation set")
    return figure
