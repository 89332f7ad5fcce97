"""Which item an annotator should see next: the orders a queue can be served in, and the
scores they rest on. Pure functions of the model's probabilities (and embeddings, votes),
shared by the store's re-scoring and the ``simulate`` command, so what is measured is
what is served.

A higher priority is served first. Uncertainty puts first the items the model is least
sure of (a small margin between its top two classes, or a high entropy), where a label
teaches it most; disagreement puts first the items whose votes (or the model and the
votes) disagree; diversity takes the uncertain items in batches spread over the model's
embedding space (k-center), so a batch is not twenty copies of one confusing face.
"""
from __future__ import annotations

import numpy as np

INSERTION = "insertion"
MARGIN = "margin"
ENTROPY = "entropy"
DISAGREEMENT = "disagreement"
DIVERSITY = "diversity"
STRATEGIES = (INSERTION, MARGIN, ENTROPY, DISAGREEMENT, DIVERSITY)
DIVERSITY_BATCH = 20  # items per diverse batch: about what one annotator labels in a few minutes
DIVERSITY_POOL = 5  # each batch is drawn from the batch-size x this most uncertain items left


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (top probability - second), per row: 1 for a tie, 0 for a sure answer."""
    top2 = np.sort(np.asarray(probs, dtype=float), axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy_uncertainty(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row, over its maximum (log of the number of classes): in [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=float), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])


def disagreement(votes: list[list[str]], predicted: list[str | None], uncertainty: np.ndarray) -> np.ndarray:
    """Per item: the share of votes against the majority, plus a half when the model's
    label is not the majority; items without votes fall back to a small share of their
    uncertainty, so they follow every disagreeing item in uncertainty order."""
    scores = np.asarray(uncertainty, dtype=float) * 0.01
    for i, (item_votes, label) in enumerate(zip(votes, predicted)):
        if not item_votes:
            continue
        values, counts = np.unique(item_votes, return_counts=True)
        majority = values[counts.argmax()]
        scores[i] += 1.0 - counts.max() / len(item_votes) + (0.5 if label and label != majority else 0.0)
    return scores


def k_center_order(embeddings: np.ndarray, uncertainty: np.ndarray, batch: int = DIVERSITY_BATCH,
                   pool: int = DIVERSITY_POOL) -> list[int]:
    """Every index, in serving order: batch after batch, each the most uncertain item left
    and then, greedily, the uncertain item farthest from those already in the batch
    (k-center on the embeddings, among the ``batch * pool`` most uncertain left)."""
    x = np.asarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    left = list(np.argsort(-np.asarray(uncertainty, dtype=float), kind="stable"))
    order: list[int] = []
    while left:
        candidates, left = left[:batch * pool], left[batch * pool:]
        chosen = [candidates.pop(0)]
        nearest = np.linalg.norm(x[candidates] - x[chosen[0]], axis=1) if candidates else np.zeros(0)
        while candidates and len(chosen) < batch:
            far = int(nearest.argmax())
            chosen.append(candidates.pop(far))
            nearest = np.delete(nearest, far)
            if candidates:
                nearest = np.minimum(nearest, np.linalg.norm(x[candidates] - x[chosen[-1]], axis=1))
        order += chosen
        left = candidates + left  # the uncertain items not taken go first in the next batch's pool
    return [int(i) for i in order]


def priorities(strategy: str, probs: np.ndarray, embeddings: np.ndarray | None = None,
               votes: list[list[str]] | None = None, predicted: list[str | None] | None = None) -> np.ndarray:
    """A priority per item (higher first) for ``strategy``; insertion order has none (zeros)."""
    probs = np.asarray(probs, dtype=float)
    if strategy == INSERTION or not len(probs):
        return np.zeros(len(probs))
    if strategy == ENTROPY:
        return entropy_uncertainty(probs)
    uncertainty = margin_uncertainty(probs)
    if strategy == MARGIN:
        return uncertainty
    if strategy == DISAGREEMENT:
        return disagreement(votes or [[] for _ in probs], predicted or [None] * len(probs), uncertainty)
    if strategy == DIVERSITY:
        if embeddings is None:
            return uncertainty  # a model with no embedding: uncertainty alone
        ranks = np.empty(len(probs))
        ranks[k_center_order(embeddings, uncertainty)] = np.arange(len(probs), 0, -1)
        return ranks / len(probs)
    raise ValueError(f"unknown order {strategy!r}; expected one of {', '.join(STRATEGIES)}")
