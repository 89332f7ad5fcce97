"""How much annotators agree: per item, Cohen's kappa for a pair, Fleiss' kappa for a queue.

Raw agreement flatters a skewed label distribution (two annotators who both say
"neutral" 90% of the time agree often by chance), so queues report kappa, which
subtracts the agreement expected by chance. A kappa that is undefined (every label
the same category, so chance agreement is already 1) is None, never a made-up number.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from ..core.labels import LABELS


def item_agreement(labels: Sequence[str]) -> tuple[str | None, float | None]:
    """The majority label (None on a tie) and the share of labels that agree with the most common one."""
    if not labels:
        return None, None
    ranked = Counter(labels).most_common()
    top, count = ranked[0]
    tie = len(ranked) > 1 and ranked[1][1] == count
    return (None if tie else top), count / len(labels)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two annotators' labels for the same items, in the same order."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs paired labels; got {len(a)} and {len(b)}")
    if not a:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if chance == 1:
        return None
    return (observed - chance) / (1 - chance)


def label_counts(votes_per_item: Sequence[Sequence[str]]) -> np.ndarray:
    """An (items, 7) matrix: how many annotators gave each item each label."""
    counts = np.zeros((len(votes_per_item), len(LABELS)), dtype=int)
    for i, votes in enumerate(votes_per_item):
        for label in votes:
            counts[i, LABELS.index(label)] += 1
    return counts


def fleiss_kappa(counts) -> float | None:
    """Fleiss' kappa from an (items, categories) count matrix.

    Items with fewer than two labels carry no agreement information and are left out.
    With a varying number of labels per item, each item's agreement is computed over
    its own raters and the category shares are pooled over all labels (the usual
    generalisation; with a constant number it is exactly Fleiss' 1971 statistic).
    """
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(axis=1)
    counts, raters = counts[raters >= 2], raters[raters >= 2]
    if not len(counts):
        return None
    per_item = ((counts ** 2).sum(axis=1) - raters) / (raters * (raters - 1))
    shares = counts.sum(axis=0) / counts.sum()
    chance = float((shares ** 2).sum())
    if chance == 1:
        return None
    return (float(per_item.mean()) - chance) / (1 - chance)
