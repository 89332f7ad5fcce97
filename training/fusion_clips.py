"""The fusion methods on the 33 real shared clips, and late-fusion weights fitted on them
with leave-one-corpus-out validation: ``python -m training.fusion_clips [--write]``.

The bundled fusions were made on synthetic triples (a FER face, a speech clip and a text
that share only a label, ``training/fusion.py``); real clips (CREMA-D, eNTERFACE'05,
MEAD in ``<data>/video``) are the check that does not flatter them. Each clip is read as
the video pipeline reads it (``finetune.clips.read_clip``: the tracked main face, the
speech segments, their transcript); the active models' per-frame / per-segment
probabilities and the learned fusions' features are cached per clip under ``--cache``
(outside the repository), and pooled as the pipeline pools them.

Late-fusion weights are fitted (``models.fusion.fit_late_weights``) on two corpora and
scored on the third, for each corpus. Only when those leave-one-corpus-out predictions
beat the bundled weights (more clips right, or as many and a higher log-likelihood) does
``--write`` put the weights fitted on all clips into ``weights/fusion-late``; it always
writes the comparison into the fusion-late card (run it again after ``training.fusion all``,
which rewrites the card).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

from emotion_app.core.labels import LABEL_TO_ID, canonical
from emotion_app.core.paths import BUNDLED_WEIGHTS, ROOT
from emotion_app.core.results import as_vector
from emotion_app.models.cards import card_description, write_model_folder
from emotion_app.models.fusion import (
    AUDIO,
    FUSED_MODALITIES,
    IMAGE,
    METHODS,
    TEXT,
    fit_late_weights,
    fusion_model,
    late_probs,
)
from emotion_app.models.registry import active_model, clear_cache, create_model, get_entry
from emotion_app.pipelines import classify
from emotion_app.pipelines.video import frame_weights, pooled
from emotion_app.train.datasets import data_root

from .fusion import fingerprint

log = logging.getLogger(__name__)

DEFAULT_CACHE = ROOT.parent / "exp" / "clips"
SYNTHETIC = "dev_triples_face+voice+text"
REAL = "shared_video_clips"
LOCO = "shared_video_clips_loco"
CARD_HEADING = "## Real clips"
NAMES = {IMAGE: "face", AUDIO: "voice", TEXT: "text"}


def clip_rows() -> list[dict]:
    root = data_root() / "video"
    with open(root / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if canonical(r["label"]) is not None]
    return [{**r, "file": str(root / r["path"]), "y": LABEL_TO_ID[canonical(r["label"])]} for r in rows]


def _sources() -> dict:
    """What each modality's outputs come from: the active models (probabilities) and the
    learned fusions' feature sources (they share one per modality)."""
    inputs = fusion_model("concat").inputs
    active = {m: active_model(m).ref for m in FUSED_MODALITIES}
    return {"active": active, "features": {m: inputs[m] for m in FUSED_MODALITIES},
            "weights": {ref: fingerprint(ref) for ref in {*active.values(), *(s["source"] for s in inputs.values())}}}


def _compute(path: str, sources: dict) -> dict:
    """One clip's per-frame / per-segment probabilities and features, and its transcript's."""
    from emotion_app.finetune.clips import read_clip
    parts = read_clip(path, transcribe=True)
    out = {"confidences": parts.confidences, "lengths": np.array([len(p) for p in parts.pieces])}
    inputs = {IMAGE: list(parts.crops), AUDIO: parts.pieces, TEXT: [parts.transcript] if parts.transcript else []}
    for m in (IMAGE, AUDIO):
        out[f"{m}_probs"] = create_model(sources["active"][m]).calibrated_proba(inputs[m]) if inputs[m] else \
            np.zeros((0, 7), np.float32)
    if inputs[TEXT]:
        out[f"{TEXT}_probs"] = as_vector(classify("text", inputs[TEXT], model=sources["active"][TEXT])[0]["probs"])[None]
    for m, spec in sources["features"].items():
        if inputs[m]:
            model = create_model(spec["source"])
            out[f"{m}_features"] = model.embed(inputs[m]) if spec["kind"] == "embedding" else \
                model.predict_proba(inputs[m])
    out["transcript"] = np.array(parts.transcript or "")
    return out


def clip_outputs(rows: list[dict], cache: Path) -> list[dict]:
    """Each clip's outputs, from ``cache`` when made with the same models."""
    sources = _sources()
    meta = json.dumps(sources, sort_keys=True)
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for r in rows:
        path = cache / (r["path"].replace("/", "__") + ".npz")
        if path.exists():
            with np.load(path) as z:
                if str(z["meta"]) == meta:
                    out.append({k: z[k] for k in z.files if k != "meta"})
                    continue
        start = time.time()
        arrays = _compute(r["file"], sources)
        np.savez(path, meta=meta, **arrays)
        log.info(f"{r['path']}: {time.time() - start:.1f} s, transcript {str(arrays['transcript'])!r}")
        out.append(arrays)
    return out


def pooled_clip(arrays: dict) -> tuple[dict, dict]:
    """The clip's probabilities and fusion features per modality, pooled as the video
    pipeline pools them (frames by confidence times top probability, segments by length)."""
    probs, feats = {}, {}
    weights = {}
    if len(arrays[f"{IMAGE}_probs"]):
        weights[IMAGE] = frame_weights(arrays[f"{IMAGE}_probs"], arrays["confidences"])
    if len(arrays[f"{AUDIO}_probs"]):
        weights[AUDIO] = arrays["lengths"]
    for m, w in weights.items():
        probs[m] = pooled(arrays[f"{m}_probs"], w)
        feats[m] = np.average(arrays[f"{m}_features"], axis=0, weights=w)
    if f"{TEXT}_probs" in arrays:
        probs[TEXT], feats[TEXT] = arrays[f"{TEXT}_probs"][0], arrays[f"{TEXT}_features"][0]
    return probs, feats


def _score(probs: np.ndarray, y: np.ndarray) -> dict:
    return {"correct": int((probs.argmax(1) == y).sum()), "n": len(y),
            "log_likelihood": round(float(np.log(probs[np.arange(len(y)), y] + 1e-6).mean()), 4)}


def evaluate(rows: list[dict], outputs: list[dict]) -> dict:
    """Per method (and each modality alone): clips right overall and per corpus, and the
    late-fusion weights fitted leave-one-corpus-out."""
    y = np.array([r["y"] for r in rows])
    corpora = np.array([r["dataset"] for r in rows], dtype=object)
    clips = [pooled_clip(a) for a in outputs]
    predictions = {f"{NAMES[m]} alone": [p.get(m) for p, _ in clips] for m in FUSED_MODALITIES}
    predictions["late"] = list(fusion_model("late").predict_proba([p for p, _ in clips]))
    for method in METHODS:
        if method != "late":
            predictions[method] = list(fusion_model(method).predict_proba([f for _, f in clips]))
    loco, fold_weights = np.zeros((len(rows), 7)), {}
    for corpus in sorted(set(corpora)):
        inside = np.flatnonzero(corpora == corpus)
        rest = np.flatnonzero(corpora != corpus)
        weights = fit_late_weights([clips[i][0] for i in rest], y[rest])
        fold_weights[corpus] = weights
        loco[inside] = late_probs([clips[i][0] for i in inside], weights)
    predictions["late, LOCO-fitted"] = list(loco)
    table = {}
    for name, preds in predictions.items():
        have = np.array([p is not None for p in preds])
        if not have.any():
            continue
        stacked = np.stack([p for p in preds if p is not None])
        table[name] = {"all": _score(stacked, y[have])}
        for corpus in sorted(set(corpora)):
            keep = (corpora[have] == corpus)
            if keep.any():
                table[name][corpus] = _score(stacked[keep], y[have][keep])
    fitted = fit_late_weights([p for p, _ in clips], y)
    return {"table": table, "loco_weights": fold_weights, "fitted_on_all": fitted,
            "transcripts": {r["path"]: str(a["transcript"]) for r, a in zip(rows, outputs)}}


def loco_is_better(table: dict) -> bool:
    """Fitted weights beat the bundled ones on unseen corpora: more clips right, or as many
    and a higher log-likelihood."""
    fitted, bundled = table["late, LOCO-fitted"]["all"], table["late"]["all"]
    return (fitted["correct"], fitted["log_likelihood"]) > (bundled["correct"], bundled["log_likelihood"])


def markdown(report: dict) -> str:
    """Clips right per method, overall and per corpus, beside the synthetic-triple accuracy."""
    table = report["table"]
    corpora = [c for c in next(iter(table.values())) if c != "all"]
    head = ["method", f"synthetic triples ({SYNTHETIC.removeprefix('dev_triples_')}) accuracy",
            "real clips right", *corpora, "log-likelihood"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, scores in table.items():
        model = METHODS.get(name)
        synthetic = get_entry(model).metrics["evaluations"][SYNTHETIC]["accuracy"] if model else None
        cells = [name, f"{synthetic:.3f}" if synthetic is not None else "",
                 f"{scores['all']['correct']}/{scores['all']['n']}",
                 *[f"{scores[c]['correct']}/{scores[c]['n']}" if c in scores else "–" for c in corpora],
                 f"{scores['all']['log_likelihood']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_card(report: dict, replace: bool) -> None:
    """The comparison into fusion-late's card (and metrics), and with ``replace`` the weights
    fitted on all clips into its config."""
    entry = get_entry(METHODS["late"])
    table = report["table"]
    evaluations = {**entry.metrics["evaluations"]}
    metrics = dict(entry.metrics, evaluations=evaluations,
                   real_clips={k: report[k] for k in ("table", "loco_weights", "fitted_on_all")})
    config = dict(entry.config)
    decision = ("the weights fitted on all 33 clips replace the validation-F1 weights" if replace else
                "the bundled weights are kept (the real-clip fit does not beat them on unseen corpora)")
    if replace:
        config["weights"] = report["fitted_on_all"]
    description = card_description(entry.folder).split(f"\n\n{CARD_HEADING}", 1)[0]
    description += (
        f"\n\n{CARD_HEADING}\n\nClips right of the 33 shared real clips (12 with speech: CREMA-D and eNTERFACE'05; "
        "MEAD's 21 are silent, so every method reads their face alone), read as the video pipeline reads them; "
        "'late, LOCO-fitted' scores each corpus with weights fitted on the other two "
        f"(`python -m training.fusion_clips --write`):\n\n{markdown(report)}\n\n"
        f"LOCO-fitted weights: {json.dumps(report['loco_weights'])}; fitted on all clips: "
        f"{json.dumps(report['fitted_on_all'])}. LOCO {table['late, LOCO-fitted']['all']['correct']} vs bundled "
        f"{table['late']['all']['correct']} right: {decision}.")
    write_model_folder(entry.folder, config, metrics, description)
    clear_cache()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.fusion_clips", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="per-clip outputs (outside the repository)")
    parser.add_argument("--write", action="store_true", help="write the fusion-late card (and weights if better)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch
    torch.set_num_threads(1)  # a shared 2-core machine
    rows = clip_rows()
    report = evaluate(rows, clip_outputs(rows, args.cache))
    better = loco_is_better(report["table"])
    log.info("\n" + markdown(report))
    log.info(f"LOCO weights {report['loco_weights']}; on all clips {report['fitted_on_all']}; better: {better}")
    if args.write:
        write_card(report, better)
        log.info(f"wrote {BUNDLED_WEIGHTS / METHODS['late']}")


if __name__ == "__main__":
    main()
