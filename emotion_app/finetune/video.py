"""A fine-tune job on labelled video clips: face, voice and their fusion from one upload.

Every clip is read as the video pipeline reads it (``clips.read_clip``). The face member
trains on the tracked main face's sampled frames, each with its clip's label and its loss
weighted as the pipeline weighs the frame (detection confidence times the face model's
top probability); the voice member on the audio track's speech segments. Both go through
``train.train`` with their tuners. A clip gives what it has: a silent clip only frames,
a faceless one only speech.

Late-fusion weights are then fitted on the held-out clips' per-modality outputs of the
new models (with the transcript's text emotion where there is speech). The fused "after"
score of a held-out clip comes from weights fitted without its speaker (or, with one
held-out speaker, without the clip), so the before/after comparison stays fair. Learned
fusions are not trained by a job: on the 33 real shared clips none beat late fusion
(``training/fusion_clips.py``), and a held-out part of an upload is far smaller than the
thousands of examples they were trained on.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from ..core.calibration import apply_temperature
from ..core.labels import LABELS
from ..core.metrics import classification_metrics
from ..core.results import as_vector
from ..models.ensemble import combine
from ..models.fusion import AUDIO, FUSION, IMAGE, TEXT, fit_late_weights, late_probs
from ..models.registry import create_model, get_entry
from ..pipelines.video import frame_weights, pooled
from ..train.export import round_to_fp16
from .clips import ClipParts, load_clips, read_clip
from .data import speaker_split
from .jobs import Job, ProgressLog
from .train import (
    UPLOAD_SET,
    card_metrics,
    folder_ref,
    job_device,
    model_probs,
    next_version,
    score_summary,
    stage_models,
    train,
)
from .tuners import TUNERS, fresh_model, lineage_id, members_of, own_validation

NAMES = {IMAGE: "face", AUDIO: "voice"}
PARTS = {IMAGE: "frames", AUDIO: "segments"}
CLIP_SETS = {m: f"{UPLOAD_SET}_{name}" for m, name in NAMES.items()}  # per-modality scores on held-out clips
KEPT_FUSION = ("late fusion, weights fitted on the held-out clips; learned fusions are not trained by fine-tune "
               "jobs (none beat late fusion on the 33 real shared clips, see the fusion-late card)")


def fine_tune_clips(job: Job, log: ProgressLog, check_cancel) -> tuple[list[Path], dict]:
    """Read the clips, train the face and voice members, fit the fusion, score, stage."""
    start, spec = time.time(), job.spec
    device, device_name = job_device()
    clips = load_clips(job.folder)
    labels = np.array([c["label"] for c in clips])
    train_idx, held_idx = speaker_split(labels, [c["speaker"] for c in clips], spec["heldout"], spec["seed"])
    log.write("start", base=spec["base"], member=spec["member"], train=len(train_idx), heldout=len(held_idx),
              epochs=spec["epochs"], device=device_name)
    held = set(held_idx.tolist())
    parts = {}
    for i, clip in enumerate(clips):
        check_cancel()
        parts[i] = read_clip(clip["path"], transcribe=i in held)  # only held-out clips' words are fused
        log.write("read", clip=i + 1, clips=len(clips), name=clip["name"], faces=len(parts[i].crops),
                  segments=len(parts[i].pieces), **({"notes": parts[i].notes} if parts[i].notes else {}))
    unusable = [clips[i]["name"] for i in parts if parts[i].empty]
    train_idx = [i for i in train_idx if not parts[i].empty]
    held_idx = [i for i in held_idx if not parts[i].empty]

    staging = job.folder / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    training = {"job": job.id, "source": spec["source"], "examples": spec["counts"], "epochs": spec["epochs"],
                "split": {"train": len(train_idx), "heldout": len(held_idx), "by_speaker": any(
                    c["speaker"] for c in clips), "seed": spec["seed"]}, "device": device_name,
                "command": f"python -m emotion_app.finetune run {job.id}"}
    staged, candidates, evaluations, clip_probs, skipped = [], {}, {}, {}, {}
    for modality in (IMAGE, AUDIO):
        x, y, w, _ = _examples(modality, parts, labels, train_idx, spec["bases"][modality])
        hx, hy, _, held_owner = _examples(modality, parts, labels, held_idx, None)
        if len(set(y.tolist())) < 2 or not len(hy):
            skipped[modality] = (f"{NAMES[modality]} member not trained: {len(set(y.tolist()))} class(es) in the "
                                 f"training clips, {len(hy)} held-out example(s)")
            log.write("note", message=skipped[modality])
            continue
        outcome = _adapt(job, log, check_cancel, device, modality, (x, y, w), (hx, hy), staging, training)
        staged += outcome["staged"]
        candidates[modality] = outcome["candidate"]
        evaluations.update(outcome["evaluations"])
        clip_probs[modality] = {phase: _per_clip(modality, parts, held_idx, held_owner, probs)
                                for phase, probs in outcome["held_probs"].items()}
        check_cancel()
    if not candidates:
        raise RuntimeError("nothing to fine-tune: " + "; ".join(skipped.values()))

    fusion, fused = _fit_fusion(job, parts, clips, labels, held_idx, clip_probs)
    evaluations = {UPLOAD_SET: fused, **{CLIP_SETS[m]: _clip_scores(labels, phases) for m, phases in clip_probs.items()},
                   **evaluations}
    for name, pair in evaluations.items():
        log.write("evaluation", phase="after", set=name, **score_summary(pair["after"]))
    staged.append(_stage_fusion(staging, job, fusion, fused, training))
    candidates[FUSION] = folder_ref(staged[-1])
    result = {"base": spec["base"], "member": spec["member"], "candidate": candidates[FUSION],
              "candidates": candidates, "new_models": [folder_ref(f) for f in staged], "device": device_name,
              "seconds": round(time.time() - start, 1), "split": training["split"], "evaluations": evaluations,
              "fusion": {"kept": KEPT_FUSION, "weights": fusion["weights"]}, "skipped": list(skipped.values()),
              "unusable_clips": unusable}
    log.write("saved", models=result["new_models"])
    return staged, result


def _examples(modality: str, parts: dict[int, ClipParts], labels, clips, base_ref: str | None):
    """Frames (face) or speech segments (voice) of ``clips``, their clip's label, their
    loss weights (frames: detection confidence times ``base_ref``'s top probability, as the
    video pipeline pools them; segments: 1) and the clip each came from."""
    items, owner, weights = [], [], []
    for i in clips:
        got = list(parts[i].crops) if modality == IMAGE else parts[i].pieces
        items += got
        owner += [i] * len(got)
    owner = np.array(owner, dtype=int)
    y = labels[owner] if len(owner) else np.zeros(0, int)
    if modality == IMAGE and base_ref and items:
        confidences = np.concatenate([parts[i].confidences for i in clips])
        weights = frame_weights(create_model(base_ref).calibrated_proba(items), confidences)
    else:
        weights = np.ones(len(items))
    return items, y, weights, owner


def _adapt(job, log, check_cancel, device, modality, train_part, held_part, staging, training) -> dict:
    """Train one modality's member on its examples; score the member and its ensemble
    before and after on the held-out examples and the modality's own validation sets;
    stage the new folders. Returns the held-out examples' (calibrated) probabilities too."""
    spec = job.spec
    base, member = get_entry(spec["bases"][modality]), get_entry(spec["members"][modality])
    tuner, members = TUNERS[member.architecture], members_of(base)
    (x, y, w), (hx, hy) = train_part, held_part
    sets = {UPLOAD_SET: (hx, hy), **own_validation(modality, spec["validation_limit"], spec["seed"])}
    before = {name: {e.ref: create_model(e.ref).predict_proba(v) for e, _ in members} for name, (v, _) in sets.items()}
    check_cancel()
    model = fresh_model(member)
    history = train(tuner, model, x, y, hx, hy, spec["epochs"], device, log, check_cancel, spec["seed"],
                    sample_weights=w, stage=NAMES[modality])
    round_to_fp16(tuner.network(model))
    tuned = {name: model_probs(tuner, model, v, device) for name, (v, _) in sets.items()}

    def mix(name, after):  # what the ensemble serves (its cascade too), with or without the tuned member
        return combine([tuned[name] if after and e.ref == member.ref else before[name][e.ref] for e, _ in members],
                       [wt for _, wt in members], base.config.get("cascade"))

    def scores(probs_of):
        return {name: classification_metrics(labels, probs_of(name).argmax(1)) for name, (_, labels) in sets.items()}

    base_before, base_after = scores(lambda n: mix(n, False)), scores(lambda n: mix(n, True))
    member_scores = (scores(lambda n: before[n][member.ref]), scores(lambda n: tuned[n]))
    name = NAMES[modality]
    staged, candidate = stage_models(
        staging, job, base, member, tuner, model, member_scores, (base_before, base_after),
        {**training, "lr": tuner.lr, "batch_size": tuner.batch_size, "history": history,
         "train_examples": len(y), "weighted_by": "detection confidence x top probability" if modality == IMAGE else
         "none"}, (hx, tuned[UPLOAD_SET]),
        upload_note=f"{name} of labelled video clips; the held-out clips' scores are in the video job's result")
    calibration = base.config.get("calibration")

    def served(probs):  # as the pipelines serve the ensemble: temperature-scaled when it is calibrated
        return apply_temperature(probs, calibration["temperature"]) if calibration and len(probs) else probs

    def shown(k):  # the held-out frames or segments, beside the clip-level scores; own sets by modality
        return f"{UPLOAD_SET}_{PARTS[modality]}" if k == UPLOAD_SET else f"{k} ({name})"

    return {"staged": staged, "candidate": candidate,
            "evaluations": {shown(k): {"before": base_before[k], "after": base_after[k]} for k in base_after},
            "held_probs": {"before": served(mix(UPLOAD_SET, False)), "after": served(mix(UPLOAD_SET, True))}}


def _per_clip(modality: str, parts, clips, owner: np.ndarray, probs: np.ndarray) -> dict[int, np.ndarray]:
    """Each held-out clip's probabilities, pooled as the video pipeline pools them: frames by
    confidence weighting, speech segments by length."""
    out = {}
    for i in clips:
        rows = np.flatnonzero(owner == i)
        if not len(rows):
            continue
        if modality == IMAGE:
            out[i] = pooled(probs[rows], frame_weights(probs[rows], parts[i].confidences))
        else:
            out[i] = pooled(probs[rows], [len(p) for p in parts[i].pieces])
    return out


def _clip_scores(labels, phases: dict) -> dict:
    clips = sorted(phases["after"])
    return {phase: classification_metrics(labels[clips], np.stack([phases[phase][i] for i in clips]).argmax(1))
            for phase in ("before", "after")}


def _fit_fusion(job: Job, parts, clips, labels, held_idx, clip_probs) -> tuple[dict, dict]:
    """Late-fusion weights fitted on the held-out clips' outputs of the new models, and the
    fused before (the base fusion's weights, the old models) / after (cross-fitted) scores."""
    from ..models.fusion import fusion_model
    from ..pipelines import classify
    base = get_entry(job.spec["bases"][FUSION])
    texts = {i: parts[i].transcript for i in held_idx if parts[i].transcript}
    results = classify("text", list(texts.values())) if texts else []
    text_probs = {i: as_vector(r["probs"]) for i, r in zip(texts, results) if "error" not in r}

    def items(phase):
        return [{**{m: clip_probs[m][phase][i] for m in clip_probs if i in clip_probs[m][phase]},
                 **({TEXT: text_probs[i]} if i in text_probs else {})} for i in held_idx]

    before, after = items("before"), items("after")
    have = [k for k, item in enumerate(after) if item]
    if not have:
        raise RuntimeError("no held-out clip has a face, speech or words to fuse")
    before, after, y = [before[k] for k in have], [after[k] for k in have], labels[[held_idx[k] for k in have]]
    speakers = [clips[held_idx[k]]["speaker"] for k in have]
    groups = speakers if len({s for s in speakers if s is not None}) >= 2 else list(range(len(have)))
    crossed = np.zeros((len(have), len(LABELS)))
    for g in set(groups):
        inside = [k for k, s in enumerate(groups) if s == g]
        rest = [k for k, s in enumerate(groups) if s != g]
        weights = fit_late_weights([after[k] for k in rest], y[rest]) if rest else None
        crossed[inside] = late_probs([after[k] for k in inside], weights)
    fitted = fit_late_weights(after, y)
    fused = {"before": classification_metrics(y, late_probs(before, fusion_model(base.ref).weights).argmax(1)),
             "after": classification_metrics(y, crossed.argmax(1))}
    return {"base": base, "weights": fitted, "cross_fitted_by": "speaker" if groups is speakers else "clip",
            "clips": len(have), "with_text": len(text_probs)}, fused


def _stage_fusion(staging: Path, job: Job, fusion: dict, fused: dict, training: dict) -> Path:
    from ..models.cards import write_model_folder
    base = fusion["base"]
    model_id = lineage_id(base.id)
    config = {**base.config, "id": model_id, "version": next_version(model_id), "default": False,
              "fine_tuned_from": base.ref, "weights": fusion["weights"]}
    details = {k: v for k, v in fusion.items() if k != "base"}
    metrics = card_metrics({UPLOAD_SET: fused["after"]}, base,
                           {**training, **details, "fine_tuned_from": base.ref, "before": score_summary(fused["before"])})
    return write_model_folder(
        staging / f"{model_id}-v{config['version']}", config, metrics,
        f"`{base.ref}` with late-fusion weights {fusion['weights']} fitted on the held-out clips of "
        f"{job.spec['source']} (fine-tune job {job.id}). `{UPLOAD_SET}` scores each held-out clip with weights "
        f"fitted without its {details['cross_fitted_by']}.")
