"""Compare text training mixtures cheaply: ``python -m training.text_mixture ENCODER``.

    python -m training.text_mixture text-minilm              # the bundled encoder's features (~25 min CPU once)
    python -m training.text_mixture base --leave-one-out     # the pretrained all-MiniLM-L6-v2, corpus left out
    python -m training.text_mixture text-dialogue            # MELD conversations as text-dialogue reads them

Fine-tuning the encoder on each candidate mixture takes a GPU; this asks the cheaper
question first: on one frozen encoder's sentence embeddings, does a mixture train a
better head? Each variant trains a fresh linear head (the SentenceClassifier's: dropout,
Linear(384, 7)) through the one loop, ``fit``, with the bundled models' loss (class
weights ``n ** -power``, label smoothing 0.1), and is scored on every dev split, on the
longest GoEmotions and CARER texts (the nearest the shared corpora come to long
self-reports), and on the XED lines held back from every mixture (``xed_split``).

Variants: ``baseline`` (the bundled mixture: CARER + GoEmotions + MELD twice, with and
without context; for text-dialogue its MELD conversations plus replayed sentences), and
XED added four ways: ``xed_first`` (a multi-label line counts as its first label),
``xed_soft`` (uniform soft target over its labels), ``xed_single`` (multi-label lines
dropped), ``xed_emotional`` (soft, XED's neutral lines dropped). ``--leave-one-out``
also trains each variant without one corpus at a time, so that corpus' dev split is
writing from another corpus (clean only with the ``base`` encoder, which never saw it).

Embeddings are cached outside the repository (``--cache``), never committed.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from emotion_app.core.labels import LABEL_TO_ID, LABELS
from emotion_app.core.metrics import classification_metrics
from emotion_app.core.paths import ROOT
from emotion_app.train.datasets import TEXT_SPLITS, text_split, xed_split
from emotion_app.train.loop import fit
from emotion_app.train.optim import class_weights, soft_targets, warmup_linear_decay

from .text_encoder import meld_dialogue_split

log = logging.getLogger(__name__)

DEFAULT_CACHE = ROOT.parent / "exp" / "text-mixture"
VARIANTS = ("baseline", "xed_first", "xed_soft", "xed_single", "xed_emotional")
# Long texts: at least this many words (GoEmotions comments are capped near 30 words;
# CARER's long tweets are first-person "i feel ..." self-reports).
LONG_WORDS = {"goemotions": 20, "carer": 25}
EPOCHS, LR, BATCH, SMOOTHING = 8, 2e-3, 256, 0.1
CLASS_WEIGHT_POWER = {"text-dialogue": 0.25}  # as each model was trained; 0.5 otherwise
REPLAY = {"goemotions": 4000, "carer": 1000}  # text-dialogue's replayed sentences (its training default)
NEUTRAL = LABEL_TO_ID["neutral"]
DIALOGUE_READING = {"text-minilm": ("meld_{}_context", (5,)), "text-dialogue": ("meld_{}_dialogue", (5, 3, True))}


def load_encoder(name: str):
    """The pretrained all-MiniLM-L6-v2 ('base') or a bundled MiniLM model, as a model with ``embed``."""
    from emotion_app.models.registry import create_model
    from emotion_app.models.text_encoder import MiniLMClassifier, base_model_dir, build_network, load_tokenizer
    if name == "base":
        return MiniLMClassifier(load_tokenizer(base_model_dir()), build_network(base_model_dir()))
    return create_model(name)


def text_sets(encoder: str) -> dict:
    """name -> (texts, labels): labels are ids, or lists of ids for XED."""
    sets = {"xed_train": xed_split("train"), "xed_heldout": xed_split("heldout")}
    for corpus in TEXT_SPLITS:
        sets[f"{corpus}_dev"] = text_split(corpus, "dev")
        if encoder != "text-dialogue":  # it trains on conversations and a replayed sample (below)
            sets[f"{corpus}_train"] = text_split(corpus, "train")
    if encoder in DIALOGUE_READING:
        pattern, reading = DIALOGUE_READING[encoder]
        for split in ("train", "dev"):
            sets[pattern.format(split)] = meld_dialogue_split(split, *reading)
    if encoder == "text-dialogue":
        for corpus, n in REPLAY.items():
            texts, labels = text_split(corpus, "train")
            idx = np.random.default_rng(0).choice(len(texts), n, replace=False)
            sets[f"{corpus}_replay"] = ([texts[i] for i in idx], [labels[i] for i in idx])
    return sets


def embeddings(encoder: str, sets: dict, cache: Path) -> dict:
    """name -> (N, 384) float32, computed once per encoder and text set."""
    folder = cache / encoder
    folder.mkdir(parents=True, exist_ok=True)
    model, out = None, {}
    for name, (texts, _) in sets.items():
        path = folder / f"{name}.npy"
        if not path.exists():
            model = model or load_encoder(encoder)
            log.info("embedding %s: %d texts", name, len(texts))
            np.save(path, model.embed(texts).astype(np.float32))
        out[name] = np.load(path)
        if len(out[name]) != len(texts):
            raise RuntimeError(f"{path} holds {len(out[name])} rows for {len(texts)} texts: delete it")
    return out


def mixture(encoder: str, sets: dict, emb: dict, variant: str, leave_out: str | None = None):
    """(features, targets, labels for the class weights, rows per part) of one variant."""
    if encoder == "text-dialogue":
        parts = ["meld_train_dialogue", *(f"{c}_replay" for c in REPLAY)]
    else:
        parts = ["carer_train", "goemotions_train", "meld_train", DIALOGUE_READING.get(
            encoder, ("meld_{}",))[0].format("train")]  # MELD twice: with context, and alone
    parts = [p for p in parts if not (leave_out and p.startswith(leave_out))]
    xs = [emb[p] for p in parts]
    labels = [[y] for p in parts for y in sets[p][1]]
    targets = [soft_targets(labels, "first")]
    counts = {p: len(sets[p][1]) for p in parts}
    if variant != "baseline":
        keep = [i for i, y in enumerate(sets["xed_train"][1])
                if (variant != "xed_single" or len(y) == 1) and (variant != "xed_emotional" or y != [NEUTRAL])]
        xed = [sets["xed_train"][1][i] for i in keep]
        xs.append(emb["xed_train"][keep])
        targets.append(soft_targets(xed, "first" if variant == "xed_first" else "uniform"))
        labels += [y[:1] for y in xed] if variant == "xed_first" else xed
        counts["xed_train"] = len(keep)
    return np.concatenate(xs), np.concatenate(targets), [i for y in labels for i in y], counts


def train_head(x: np.ndarray, targets: np.ndarray, weight_labels: list, power: float, seed: int):
    """A fresh linear head on fixed features, trained by ``fit``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(x.shape[1], len(LABELS)))
    features, soft = torch.from_numpy(x), torch.from_numpy(targets)
    # Probability targets for every variant, so hard and soft ones share one loss.
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(class_weights(weight_labels, power)),
                                        label_smoothing=SMOOTHING)
    optimizer = torch.optim.AdamW(head.parameters(), lr=LR, weight_decay=0.01)
    steps = EPOCHS * math.ceil(len(x) / BATCH)
    scheduler = warmup_linear_decay(optimizer, steps, int(0.06 * steps))

    def batches(epoch):
        order = torch.from_numpy(rng.permutation(len(x)))
        return (order[i:i + BATCH] for i in range(0, len(x), BATCH))

    fit(head, batches, lambda idx: loss_fn(head(features[idx]), soft[idx]), EPOCHS, optimizer, scheduler,
        name="head", on_epoch=lambda record: None)
    return head


def scores(head, sets: dict, emb: dict) -> dict:
    """Weighted F1 per dev split and transfer set; XED held-out lines are scored against
    their first label (``xed_heldout``) and as right when any of their labels is hit."""
    def predict(name, mask=slice(None)):
        with torch.inference_mode():
            return head(torch.from_numpy(emb[name][mask])).argmax(1).numpy()
    out = {name: classification_metrics(sets[name][1], predict(name))["weighted_f1"]
           for name in sets if name.endswith("_dev") or name in ("meld_dev_context", "meld_dev_dialogue")}
    for corpus, words in LONG_WORDS.items():
        texts, y = sets[f"{corpus}_dev"]
        long = np.array([len(t.split()) >= words for t in texts])
        out[f"{corpus}_dev_long"] = classification_metrics(np.asarray(y)[long], predict(f"{corpus}_dev", long))[
            "weighted_f1"]
    labels = sets["xed_heldout"][1]
    pred = predict("xed_heldout")
    out["xed_heldout"] = classification_metrics([y[0] for y in labels], pred)["weighted_f1"]
    out["xed_heldout_any_acc"] = float(np.mean([p in y for p, y in zip(pred, labels)]))
    return out


def compare(encoder: str, variants, seeds: int, leave_one_out: bool, cache: Path) -> dict:
    sets = text_sets(encoder)
    emb = embeddings(encoder, sets, cache)
    power = CLASS_WEIGHT_POWER.get(encoder, 0.5)
    results = {}
    for variant in variants:
        for leave_out in (None, *(TEXT_SPLITS if leave_one_out else ())):
            x, targets, weight_labels, counts = mixture(encoder, sets, emb, variant, leave_out)
            runs = [scores(train_head(x, targets, weight_labels, power, seed), sets, emb) for seed in range(seeds)]
            key = variant + (f" without {leave_out}" if leave_out else "")
            results[key] = {"rows": counts, **{k: [r[k] for r in runs] for k in runs[0]}}
            log.info("%s: %s", key, {k: round(float(np.mean(v)), 4) for k, v in results[key].items() if k != "rows"})
    return results


def markdown(results: dict) -> str:
    """Mean over seeds (standard deviation) per variant and set."""
    columns = [k for k in next(iter(results.values())) if k != "rows"]
    lines = ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, r in results.items():
        lines.append(f"| {key} | " + " | ".join(f"{np.mean(r[c]):.4f} ({np.std(r[c]):.4f})" for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.text_mixture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoder", choices=("base", "text-minilm", "text-dialogue"))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--leave-one-out", action="store_true", help="also train without each corpus in turn")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embeddings (outside the repository)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # a shared 2-core machine: the heads need no more, the one-off embedding pass waits
    results = compare(args.encoder, args.variants, args.seeds, args.leave_one_out, args.cache)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    log.info("results:\n%s", markdown(results))


if __name__ == "__main__":
    main()
