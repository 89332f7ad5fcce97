"""Train and compare the fusion methods: ``python -m training.fusion {features,train,clips,all}``.

There is no corpus here with aligned face, voice and text, so, as TERT-Ensemble and the
gated-fusion paper did, examples are triples of a face (FER-2013), a voice clip
(RAVDESS / EmoDB) and a text (CARER / GoEmotions / MELD) that share a label. Such
triples are congruent by construction (every modality shows the same emotion), which
real clips do not promise, so fused scores on them flatter every fusion method alike;
the shared real video clips (``clips``) are the check that does not.

- ``features``: each modality's inputs from the training and validation splits go
  through the active model (probabilities, for late fusion and the single-modality
  baselines) and the fusion feature source (``fusion.embedding_source``); cached in
  ``.devcache/fusion``.
- ``train``: each learned method trains on fresh random triples every epoch, drawn
  from the training splits only (FER-2013 train, the speech of every speaker the
  shipped speech models trained on, the text train splits), with whole modalities
  dropped at random so that any subset can be fused. Validation triples come from
  FER-2013 PublicTest, the one RAVDESS actor the shipped speech models never saw
  (60 clips: small, so voice scores are noisy) and the text dev splits, scored for
  every subset of modalities.
- ``clips``: every method on the shared real clips through the video pipeline; the
  scores are added to each fusion model's card.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import logging
import time

import numpy as np

from emotion_app.core.labels import LABEL_TO_ID, LABELS, canonical
from emotion_app.core.metrics import classification_metrics
from emotion_app.core.paths import BUNDLED_WEIGHTS, ROOT
from emotion_app.models.cards import update_model_folder, write_model_folder
from emotion_app.models.fusion import (
    AUDIO,
    FUSED_MODALITIES,
    FUSION_NETWORKS,
    IMAGE,
    METHODS,
    TEXT,
    build_fusion_network,
    embedding_source,
    late_fusion,
)
from emotion_app.models.registry import active_model, clear_cache, create_model, get_entry
from emotion_app.pipelines import classify
from emotion_app.train.datasets import (
    SANITY_SPEAKERS,
    TEXT_SPLITS,
    data_root,
    licences,
    load_fer,
    speech_corpus,
    text_split,
)
from emotion_app.train.export import fp16_state
from emotion_app.train.loop import fit

log = logging.getLogger(__name__)

CACHE = ROOT / ".devcache" / "fusion"
# Inputs per class (per corpus for text) at most, drawn at random: enough for fresh
# triples every epoch, and the feature pass stays minutes on a CPU.
PER_CLASS = {"train": 1000, "dev": 300}
VALIDATION = "dev_triples_face+voice+text"
TRIPLES_PER_CLASS = 2000  # per training epoch
DEV_TRIPLES_PER_CLASS = 300
FEATURE_NOISE = 1.0  # std, in units of each feature's spread (0, 0.5, 1 and 2 were tried on concat-mlp)
NAMES = {IMAGE: "face", AUDIO: "voice", TEXT: "text"}
SETTINGS = {
    # method -> network parameters and training settings
    "concat-mlp": {"net": {"hidden": 256, "dropout": 0.3}, "epochs": 30, "lr": 1e-3},
    "gated": {"net": {"hidden": 128, "dropout": 0.3}, "epochs": 30, "lr": 1e-3},
    "mrpn": {"net": {"hidden": 128, "dropout": 0.3}, "epochs": 30, "lr": 1e-3},
    "embracenet": {"net": {"hidden": 256, "dropout": 0.3}, "epochs": 30, "lr": 1e-3},
}
DESCRIPTIONS = {
    "late-fusion": "Weighted late fusion (TERT-Ensemble): the present modalities' probabilities averaged with weights "
            "from each active model's validation weighted F1, normalised; the app's sliders override them. "
            "Nothing is trained.",
    "concat-mlp": "Feature concatenation + MLP (MFER): the modalities' standardised embeddings and their presence "
                  "bits, concatenated, through two LayerNorm/GELU layers.",
    "gated": "Gated fusion, F = sum_m g_m H_m: each modality projected to a shared size with tanh, a softmax gate "
             "over the present modalities computed from all of them (the three-modality form of "
             "F = g*Hv + (1-g)*Ht of the DistilBERT + EfficientNet paper).",
    "mrpn": "MRPN: a residual perceptron per modality with its own classifier, and a fusion head over their "
            "concatenation; trained with L = L_face + L_voice + L_text + L_fused.",
    "embracenet": "EmbraceNet: docking layers to a shared size; in training each fused dimension comes from one "
                  "present modality drawn at random (multinomial), at inference the expectation of that draw.",
}


# --- modality pools -------------------------------------------------------------------------

def per_class_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``n`` items of each class, drawn at random."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), min(n, int((labels == c).sum())), replace=False)
             for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def image_pool(split: str):
    """FER-2013 train (at most PER_CLASS faces per class) or all of PublicTest."""
    images, labels = load_fer("train" if split == "train" else "publictest")
    keep = per_class_sample(labels, PER_CLASS["train"]) if split == "train" else np.arange(len(labels))
    return [images[i] for i in keep], np.asarray(labels)[keep]


def audio_pool(split: str):
    """RAVDESS + EmoDB cropped to their speech as the speech models train; dev is the
    speakers the shipped speech models never trained on (``SANITY_SPEAKERS``), train is
    everyone else."""
    from emotion_app.media.audio import load_audio

    from .audio import speech_extent
    keep = [it for it in speech_corpus() if (it["speaker"] in SANITY_SPEAKERS) == (split == "dev")]
    return [speech_extent(load_audio(it["path"])) for it in keep], np.array([it["label"] for it in keep])


def text_pool(split: str):
    """Every text corpus' split, at most PER_CLASS texts per class per corpus."""
    texts, labels = [], []
    for corpus in TEXT_SPLITS:
        t, y = text_split(corpus, split)
        keep = per_class_sample(np.asarray(y), PER_CLASS[split])
        texts += [t[i] for i in keep]
        labels += [y[i] for i in keep]
    return texts, np.array(labels)


POOLS = {IMAGE: image_pool, AUDIO: audio_pool, TEXT: text_pool}


def _batched_probs(model, inputs, batch: int = 256) -> np.ndarray:
    return np.concatenate([model.predict_proba(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def _cached(name: str, meta: dict, compute) -> dict:
    """Arrays from ``.devcache/fusion/<name>.npz`` if made with the same ``meta``, else
    ``compute()``'s, saved there."""
    path = CACHE / f"{name}.npz"
    if path.exists():
        with np.load(path) as z:
            if json.loads(str(z["meta"])) == meta:
                return {k: z[k] for k in z.files if k != "meta"}
    start = time.time()
    arrays = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=json.dumps(meta), **arrays)
    log.info(f"{name}: {time.time() - start:.0f} s")
    return arrays


def fingerprint(ref: str) -> str:
    """Size and time of a model's weight files (and its members'): a model retrained under
    the same id and version invalidates the cache."""
    entry = get_entry(ref)
    files = sorted(entry.folder.glob("*.safetensors"))
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files]
    parts += [fingerprint(m["id"]) for m in entry.config.get("members", [])]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def modality_features(modality: str, split: str) -> dict:
    """Labels, the active model's probabilities and the fusion features of one pool,
    cached separately so a new active model does not redo the features, or vice versa."""
    active = active_model(modality).ref
    source = embedding_source(modality)
    pool = []

    def inputs():
        if not pool:
            pool.extend(POOLS[modality](split))
            log.info(f"{modality} {split}: {len(pool[0])} inputs")
        return pool

    def probs():
        x, labels = inputs()
        return {"labels": labels, "probs": _batched_probs(create_model(active), x).astype(np.float32)}

    def features():
        x, labels = inputs()
        model = create_model(source["source"])
        f = model.embed(x) if source["kind"] == "embedding" else _batched_probs(model, x)
        return {"labels": labels, "features": f.astype(np.float32)}

    p = _cached(f"{modality}-{split}-probs", {"model": active, "weights": fingerprint(active), "per_class": PER_CLASS},
                probs)
    f = _cached(f"{modality}-{split}-features",
                {**source, "weights": fingerprint(source["source"]), "per_class": PER_CLASS}, features)
    if not np.array_equal(p["labels"], f["labels"]):
        raise RuntimeError(f"{modality} {split}: cached probabilities and features are of different inputs")
    return {"labels": p["labels"], "probs": p["probs"], "features": f["features"], "meta": {"active": active, **source}}


def all_features() -> dict:
    return {split: {m: modality_features(m, split) for m in FUSED_MODALITIES} for split in ("train", "dev")}


# --- triples ----------------------------------------------------------------------------------

def draw_triples(pools: dict, per_class: int, rng) -> tuple[dict, np.ndarray]:
    """Index arrays into each modality's pool, ``per_class`` triples per class, all three
    of the same label (drawn with replacement where a pool has fewer)."""
    index = {m: [] for m in FUSED_MODALITIES}
    labels = []
    for c in range(len(LABELS)):
        for m in FUSED_MODALITIES:
            candidates = np.flatnonzero(pools[m]["labels"] == c)
            index[m].append(rng.choice(candidates, per_class, replace=len(candidates) < per_class))
        labels += [c] * per_class
    return {m: np.concatenate(v) for m, v in index.items()}, np.array(labels)


SUBSETS = [s for r in (3, 2, 1) for s in itertools.combinations(FUSED_MODALITIES, r)]


def subset_name(subset) -> str:
    return "+".join(NAMES[m] for m in subset)


def random_masks(n: int, rng, drop: float = 0.3) -> np.ndarray:
    """(n, 3) presence: each modality dropped with probability ``drop``, never all three."""
    mask = rng.random((n, len(FUSED_MODALITIES))) >= drop
    empty = ~mask.any(axis=1)
    mask[empty, rng.integers(0, len(FUSED_MODALITIES), empty.sum())] = True
    return mask


def standardiser(train: dict) -> tuple[dict, dict]:
    mean = {m: train[m]["features"].mean(axis=0) for m in FUSED_MODALITIES}
    std = {m: train[m]["features"].std(axis=0) + 1e-4 for m in FUSED_MODALITIES}
    return mean, std


def batch_tensors(pools, index, rows, mask, mean, std, device):
    import torch
    xs = []
    for j, m in enumerate(FUSED_MODALITIES):
        x = (pools[m]["features"][index[m][rows]] - mean[m]) / std[m]
        x[~mask[:, j]] = 0.0
        xs.append(torch.from_numpy(x.astype(np.float32)).to(device))
    return xs, torch.from_numpy(mask).to(device)


# --- training ---------------------------------------------------------------------------------

def pick_device(name: str = "auto"):
    import torch
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def train_network(architecture: str, train: dict, mean, std, seed: int, device) -> object:
    import torch
    settings = SETTINGS[architecture]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dims = [train[m]["features"].shape[1] for m in FUSED_MODALITIES]
    net = build_fusion_network(architecture, dims, **settings["net"]).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=settings["lr"], weight_decay=1e-2)
    steps_per_epoch = int(np.ceil(TRIPLES_PER_CLASS * len(LABELS) / 256))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings["lr"], total_steps=settings["epochs"] * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def batches(epoch):
        """Fresh triples every epoch, with whole modalities dropped at random."""
        index, labels = draw_triples(train, TRIPLES_PER_CLASS, rng)
        masks = random_masks(len(labels), rng)
        order = rng.permutation(len(labels))
        for start in range(0, len(order), 256):
            rows = order[start:start + 256]
            xs, mask = batch_tensors(train, index, rows, masks[rows], mean, std, device)
            # Gaussian noise on the standardised features: the modality models are surer of
            # their own training data than of anything new, and the fusion must not learn that.
            xs = [x + FEATURE_NOISE * torch.randn_like(x) * mask[:, j:j + 1] for j, x in enumerate(xs)]
            yield xs, mask, torch.from_numpy(labels[rows]).to(device)

    def loss(batch):
        xs, mask, y = batch
        if architecture != "mrpn":
            return loss_fn(net(xs, mask), y)
        fused, per_modality = net(xs, mask, per_modality=True)  # L = sum over present modalities of L_m, + L_fused
        total = loss_fn(fused, y)
        for j, logits in enumerate(per_modality):
            if mask[:, j].any():
                total = total + loss_fn(logits[mask[:, j]], y[mask[:, j]])
        return total

    fit(net, batches, loss, settings["epochs"], opt, sched, name=f"fusion {architecture}")
    return net


def network_probs(net, pools, index, mask, mean, std, device) -> np.ndarray:
    import torch
    out = []
    with torch.inference_mode():
        for start in range(0, len(mask), 1024):
            rows = np.arange(start, min(start + 1024, len(mask)))
            xs, m = batch_tensors(pools, index, rows, mask[rows], mean, std, device)
            out.append(net(xs, m).softmax(dim=-1).float().cpu().numpy())
    return np.concatenate(out)


def late_probs(pools, index, mask, weights) -> np.ndarray:
    out = []
    for i in range(len(mask)):
        present = {m: pools[m]["probs"][index[m][i]] for j, m in enumerate(FUSED_MODALITIES) if mask[i, j]}
        out.append([late_fusion(present, weights)["probs"][label] for label in LABELS])
    return np.array(out)


def evaluate_subsets(predict, labels: np.ndarray) -> dict:
    """Metrics of ``predict(mask)`` on the validation triples with each subset of modalities present."""
    out = {}
    for subset in SUBSETS:
        mask = np.tile([m in subset for m in FUSED_MODALITIES], (len(labels), 1))
        out[f"dev_triples_{subset_name(subset)}"] = classification_metrics(labels, predict(mask).argmax(axis=1))
    return out


def fp16_tensors(net, mean, std) -> dict:
    """The network's fp16 state under ``net.``, and the feature standardisation in fp32."""
    import torch
    tensors = {f"net.{k}": v for k, v in fp16_state(net).items()}
    for m in FUSED_MODALITIES:
        tensors[f"mean.{m}"] = torch.from_numpy(np.ascontiguousarray(mean[m], dtype=np.float32))
        tensors[f"std.{m}"] = torch.from_numpy(np.ascontiguousarray(std[m], dtype=np.float32))
    return tensors


def train_all(methods=FUSION_NETWORKS, seed: int = 0, device: str = "auto") -> dict:
    """Train the learned methods, write every fusion folder (late fusion included) and
    return the validation table: method -> subset -> metrics."""
    from safetensors.torch import save_file
    feats = all_features()
    train, dev = feats["train"], feats["dev"]
    dev_index, dev_labels = draw_triples(dev, DEV_TRIPLES_PER_CLASS, np.random.default_rng(seed + 1))
    inputs = {m: {k: train[m]["meta"][k] for k in ("source", "kind", "dim")} for m in FUSED_MODALITIES}
    sources = {m: train[m]["meta"]["active"] for m in FUSED_MODALITIES}
    weights = {m: get_entry(sources[m]).validation_f1 for m in FUSED_MODALITIES}
    table = {}
    for m in FUSED_MODALITIES:  # a single modality's prediction is the same whatever else is present
        single = classification_metrics(dev_labels, dev[m]["probs"][dev_index[m]].argmax(axis=1))
        table[f"single {NAMES[m]}"] = {f"dev_triples_{subset_name(s)}": single for s in SUBSETS if m in s}
    table["late"] = evaluate_subsets(lambda mask: late_probs(dev, dev_index, mask, weights), dev_labels)
    data = {"train": {m: f"{len(train[m]['labels'])} {NAMES[m]} inputs" for m in FUSED_MODALITIES},
            "dev": {m: f"{len(dev[m]['labels'])} {NAMES[m]} inputs" for m in FUSED_MODALITIES},
            "dev_triples": len(dev_labels), "modality_models": sources, "seed": seed,
            "licences": licences("fer2013", "ravdess", "emodb", "carer", "goemotions", "meld")}
    _write({"id": METHODS["late"], "version": "1", "modality": "fusion", "architecture": "late-fusion",
                    "labels": list(LABELS), "default": True},
           {"evaluations": table["late"], "validation": VALIDATION, "headline": VALIDATION,
            "training": {**data, "weights_at_evaluation": weights}}, {})
    mean, std = standardiser(train)
    dev_device = pick_device(device)
    for architecture in methods:
        start = time.time()
        net = train_network(architecture, train, mean, std, seed, dev_device)
        table[architecture] = evaluate_subsets(
            lambda mask, net=net: network_probs(net, dev, dev_index, mask, mean, std, dev_device), dev_labels)
        method = next(k for k, v in METHODS.items() if v.removeprefix("fusion-") == architecture)
        config = {"id": METHODS[method], "version": "1", "modality": "fusion", "architecture": architecture,
                  "labels": list(LABELS), "default": False, "inputs": inputs, "net": SETTINGS[architecture]["net"]}
        training = {**data, **{k: v for k, v in SETTINGS[architecture].items() if k != "net"},
                    "triples_per_class_per_epoch": TRIPLES_PER_CLASS, "modality_dropout": 0.3,
                    "feature_noise": FEATURE_NOISE,
                    "device": str(dev_device), "seconds": round(time.time() - start, 1)}
        tensors = fp16_tensors(net, mean, std)
        _write(config, {"evaluations": table[architecture], "validation": VALIDATION, "headline": VALIDATION,
                        "training": training},
               {"model.safetensors": lambda p, t=tensors: save_file(t, str(p))})
        _check_saved(method, dev, dev_index, dev_labels, table[architecture])
    log.info(comparison_markdown(table))
    return table


DATA_NOTE = (
    "No corpus here has aligned face, voice and text, so, as TERT-Ensemble and the gated-fusion paper did, "
    "examples are triples of a face (FER-2013), a voice clip (RAVDESS / EmoDB) and a text (CARER / GoEmotions / "
    "MELD) that share a label. Learned methods train on fresh triples every epoch from training splits only "
    "(FER-2013 train, the speakers the speech models trained on, the text train splits), with whole modalities "
    "dropped at random. Validation triples (`dev_triples_*`, one per subset of modalities present) come from "
    "FER-2013 PublicTest, the RAVDESS actor the speech models never saw (60 clips, so voice scores are noisy) and "
    "the text dev splits. Such triples are congruent by construction, which flatters every fusion method alike; "
    "`shared_video_clips` scores the method through the video pipeline on 33 real clips (CREMA-D, eNTERFACE'05, "
    "MEAD; 12 have speech), too few to separate methods reliably. Reproduce with `python -m training.fusion all`.")


def card_description(architecture: str) -> str:
    """The method, then how its examples were made and scored."""
    return DESCRIPTIONS[architecture] + "\n\n" + DATA_NOTE


def _write(config: dict, metrics: dict, files: dict) -> None:
    folder = write_model_folder(BUNDLED_WEIGHTS / config["id"], config, metrics,
                                card_description(config["architecture"]), files=files)
    clear_cache()
    log.info(f"wrote {folder}")


def _check_saved(method: str, dev, dev_index, dev_labels, metrics: dict) -> None:
    """Score the model as loaded back from its folder: the fp16 weights that ship."""
    model = create_model(METHODS[method])
    batch = [{m: dev[m]["features"][dev_index[m][i]] for m in FUSED_MODALITIES} for i in range(len(dev_labels))]
    scored = classification_metrics(dev_labels, model.predict_proba(batch).argmax(axis=1))
    expected = metrics[f"dev_triples_{subset_name(FUSED_MODALITIES)}"]["weighted_f1"]
    log.info(f"{METHODS[method]} reloaded: weighted F1 {scored['weighted_f1']:.4f} (trained {expected:.4f})")
    if abs(scored["weighted_f1"] - expected) > 0.01:
        raise RuntimeError(f"{METHODS[method]}: the saved model scores differently from the trained one")


def comparison_markdown(table: dict) -> str:
    """Weighted F1 per method (rows) and subset of modalities (columns)."""
    names = [f"dev_triples_{subset_name(s)}" for s in SUBSETS]
    rows = ["| method | " + " | ".join(n.removeprefix("dev_triples_") for n in names) + " |",
            "|---|" + "---|" * len(names)]
    for method, evaluations in table.items():
        cells = [f"{evaluations[n]['weighted_f1']:.3f}" if n in evaluations else "" for n in names]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- real clips ---------------------------------------------------------------------------------

def evaluate_clips(methods=tuple(METHODS)) -> dict:
    """Every method through the video pipeline on the shared clips; per-clip predictions
    per modality and fused, and metrics added to each fusion model's card."""
    root = data_root() / "video"
    with open(root / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if canonical(r["label"]) is not None]
    paths = [str(root / r["path"]) for r in rows]
    labels = np.array([LABEL_TO_ID[canonical(r["label"])] for r in rows])
    per_clip, scores = {}, {}
    for method in methods:
        start = time.time()
        results = classify("video", paths, fusion=method)
        log.info(f"clips with {method}: {time.time() - start:.0f} s")
        ok = [i for i, r in enumerate(results) if "error" in r]
        if ok:
            raise RuntimeError(f"{len(ok)} clips failed: {[results[i]['error'] for i in ok]}")
        predicted = np.array([LABEL_TO_ID[r["label"]] for r in results])
        scores[method] = {"shared_video_clips": classification_metrics(labels, predicted)}
        for r, row in zip(results, rows):
            clip = per_clip.setdefault(row["path"], {"true": canonical(row["label"])})
            clip.update({name: m["label"] for name, m in r["modalities"].items()})
            clip[method] = r["label"]
    for modality in ("face", "voice", "text"):
        have = [i for i, r in enumerate(rows) if modality in per_clip[r["path"]]]
        if have:
            predicted = np.array([LABEL_TO_ID[per_clip[rows[i]["path"]][modality]] for i in have])
            scores[f"single {modality}"] = {"shared_video_clips": classification_metrics(labels[have], predicted)}
    for method in methods:
        _add_evaluation(METHODS[method], scores[method])
    (CACHE / "clips.json").write_text(json.dumps({"per_clip": per_clip, "scores": scores}, indent=1))
    log.info(clips_markdown(per_clip, methods))
    for name, s in scores.items():
        m = s["shared_video_clips"]
        log.info(f"{name}: n={m['n']} accuracy {m['accuracy']:.3f} weighted F1 {m['weighted_f1']:.3f}")
    return scores


def clips_markdown(per_clip: dict, methods) -> str:
    columns = ["true", "face", "voice", "text", *methods]
    rows = ["| clip | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for clip, preds in per_clip.items():
        rows.append(f"| {clip} | " + " | ".join(preds.get(c, "-") for c in columns) + " |")
    return "\n".join(rows)


def _add_evaluation(model_id: str, evaluations: dict) -> None:
    """Rewrite a fusion folder with more evaluations, keeping its other files."""
    entry = get_entry(model_id)
    metrics = dict(entry.metrics, evaluations={**entry.metrics["evaluations"], **evaluations})
    update_model_folder(entry.folder, metrics=metrics)
    clear_cache()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["features", "train", "clips", "all"])
    parser.add_argument("--methods", nargs="+", choices=FUSION_NETWORKS, default=list(FUSION_NETWORKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.step == "features":
        all_features()
    if args.step in ("train", "all"):
        train_all(args.methods, seed=args.seed, device=args.device)
    if args.step in ("clips", "all"):
        evaluate_clips()


if __name__ == "__main__":
    main()
