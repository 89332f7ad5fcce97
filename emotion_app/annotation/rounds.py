"""A queue's learning loop, round by round: a round is the time one model served the
pre-annotations (it ends when a fine-tune is activated and the next model takes over).
Per round: the labels collected, how many of the model's pre-annotations annotators
changed, the model's accuracy on the queue's agreed labels (where it predicted them) and
its weighted F1 on its own validation set (its card)."""
from __future__ import annotations

from collections import defaultdict

from ..core.errors import ModelNotFound
from ..models.registry import get_entry
from .store import AnnotationStore

NO_PREDICTION = "no prediction"


def rounds(store: AnnotationStore, queue: str) -> list[dict]:
    """One row per model, in the order its pre-annotations were first labelled."""
    given = store.current_labels(queue)
    shown = store.all_predictions(sorted({label["item_id"] for label in given}))
    by_item: dict[int, list[dict]] = defaultdict(list)
    for p in shown:
        by_item[p["item_id"]].append(p)
    per_round: dict[str, dict] = {}
    for label in given:
        before = [p for p in by_item[label["item_id"]] if p["at"] <= label["at"]]
        model = before[-1]["model"] if before else NO_PREDICTION
        row = per_round.setdefault(model, {"model": model, "labels": 0, "changed": 0})
        row["labels"] += 1
        row["changed"] += int(bool(before) and before[-1]["label"] != label["label"])
    agreed = {item.id: label for item, label in store.agreed_items(queue)}
    for model, row in per_round.items():
        verdicts = {p["item_id"]: p["label"] == agreed[p["item_id"]] for p in shown
                    if p["model"] == model and p["item_id"] in agreed}
        row["changed_share"] = row["changed"] / row["labels"]
        row["agreed_items"] = len(verdicts)
        row["agreed_accuracy"] = sum(verdicts.values()) / len(verdicts) if verdicts else None
        row["validation_f1"] = _validation_f1(model)
    return list(per_round.values())


def _validation_f1(model: str) -> float | None:
    try:
        return get_entry(model).validation_f1 or None
    except (ModelNotFound, ValueError):
        return None
