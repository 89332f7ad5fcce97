"""One fine-tune job's work: score the active model, train the chosen member, score the
new version with the fp16 weights it stores, and write the model folders to staging.

The held-out split of the upload is scored after every epoch so progress can be
watched; it is not used to pick an epoch, so the final comparison on it stays fair.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..core.labels import LABELS
from ..models.base import ModelEntry
from ..models.ensemble import combine
from ..models.registry import ARCHITECTURES, create_model, get_entry, list_models
from ..train.export import round_to_fp16
from .data import load_examples, stratified_split
from .jobs import Job, ProgressLog
from .tuners import TUNERS, fresh_model, lineage_id, members_of, own_validation

UPLOAD_SET = "upload_heldout"
# A fine-tune learns from its base model's data and from the examples it was given.
UPLOAD_LICENCE = "the fine-tuning examples: as their uploader and annotators hold them"


def card_metrics(evaluations: dict, base: ModelEntry, training: dict) -> dict:
    """metrics.json of a fine-tuned model. Its ``validation`` and ``headline`` set is
    the base model's validation set where it was scored here, so its fusion weight and
    registry score compare with the bundled models'; else the first shared set; only
    without shared data the upload's held-out rows."""
    shared = [name for name in evaluations if name != UPLOAD_SET]
    base_set = (base.evaluation("validation") or (None,))[0]
    chosen = base_set if base_set in evaluations else shared[0] if shared else UPLOAD_SET
    inherited = base.metrics.get("training", {}).get("licences", [])
    if isinstance(inherited, str):  # cards written before licences were a list
        inherited = inherited.split("; ")
    licences = list(dict.fromkeys([*inherited, UPLOAD_LICENCE]))  # each once
    return {"evaluations": evaluations, "validation": chosen, "headline": chosen,
            "training": {"licences": licences, **training}}


def next_version(model_id: str) -> str:
    versions = [int(e.version) for e in list_models() if e.id == model_id and e.version.isdigit()]
    return str(max(versions, default=0) + 1)


def score_summary(m: dict) -> dict:
    return {k: round(m[k], 4) for k in ("accuracy", "weighted_f1", "macro_f1", "uar")} | {"n": m["n"]}


def _freeze_batch_norm(net) -> None:
    """Keep BatchNorm running statistics from the full corpus: a small upload's batches
    would overwrite them."""
    import torch
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def train(tuner, model, x: list, y: np.ndarray, held_x: list, held_y: np.ndarray, epochs: int, device,
          log: ProgressLog, check_cancel, seed: int = 0, sample_weights: np.ndarray | None = None,
          stage: str | None = None) -> list[dict]:
    """Fine-tune ``model`` in place; class-weighted (inverse square root) cross-entropy
    with label smoothing, AdamW, linear warm-up and decay. ``sample_weights`` weigh each
    example's loss (a video frame by how sure its face is); ``stage`` names the progress
    events when one job trains several models."""
    import torch

    from ..core.metrics import classification_metrics
    from ..train.loop import fit
    from ..train.optim import class_weights, warmup_linear_decay

    net = tuner.network(model)
    tuner.to_device(model, device)
    features = tuner.featurize(model, x)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tuner.lr, weight_decay=tuner.weight_decay)
    per_epoch = math.ceil(len(x) / tuner.batch_size)
    total = epochs * per_epoch
    scheduler = warmup_linear_decay(optimizer, total, total // 10)
    per_class = torch.from_numpy(class_weights(y)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=per_class, label_smoothing=0.1, reduction="none")
    targets = torch.as_tensor(y, device=device)
    weights = torch.as_tensor(np.ones(len(y)) if sample_weights is None else sample_weights, device=device).float()
    tag = {"stage": stage} if stage else {}
    generator = torch.Generator(device=device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    log_every = max(1, per_epoch // 20)

    def train_mode():
        check_cancel()
        net.train()
        _freeze_batch_norm(net)

    def batches(epoch):
        order = rng.permutation(len(x))
        for step in range(per_epoch):
            yield order[step * tuner.batch_size:(step + 1) * tuner.batch_size]

    def loss(idx):
        """The weighted mean over the batch (class weight times sample weight)."""
        losses = loss_fn(tuner.logits(model, [features[i] for i in idx], device, generator, rng).float(), targets[idx])
        w = weights[idx] * per_class[targets[idx]]
        return (losses * weights[idx]).sum() / w.sum().clamp_min(1e-8)

    def on_step(epoch, step, value):
        if step % log_every == 0 or step == per_epoch:
            log.write("step", **tag, epoch=epoch, step=(epoch - 1) * per_epoch + step, steps=total,
                      loss=round(value.item(), 4))

    def evaluate(epoch):
        m = classification_metrics(held_y, model_probs(tuner, model, held_x, device).argmax(1))
        return {"epochs": epochs, "heldout_accuracy": round(m["accuracy"], 4),
                "heldout_weighted_f1": round(m["weighted_f1"], 4)}

    return fit(net, batches, loss, epochs, optimizer, scheduler, clip_norm=1.0, evaluate=evaluate,
               train_mode=train_mode, on_step=on_step, on_epoch=lambda record: log.write("epoch", **tag, **record),
               name=f"fine-tune {model.entry.ref}").history


def model_probs(tuner, model, examples: list, device) -> np.ndarray:
    """The model's own predict_proba (as the app runs it), on the device it supports."""
    import torch
    if not tuner.inference_on_cpu:
        return model.predict_proba(examples)
    tuner.to_device(model, torch.device("cpu"))
    try:
        return model.predict_proba(examples)
    finally:
        tuner.to_device(model, device)


def fine_tune(job: Job, log: ProgressLog, check_cancel) -> tuple[list[Path], dict]:
    """Train and score; returns the staged model folders and the job's result."""
    from ..core.metrics import classification_metrics

    start = time.time()
    spec = job.spec
    device, device_name = job_device()
    examples, labels = load_examples(job.folder / "examples.npz")
    train_idx, held_idx = stratified_split(labels, spec["heldout"], spec["seed"])
    base, member = get_entry(spec["base"]), get_entry(spec["member"])
    tuner = TUNERS[member.architecture]
    log.write("start", base=base.ref, member=member.ref, train=len(train_idx), heldout=len(held_idx),
              epochs=spec["epochs"], device=device_name)
    sets = {UPLOAD_SET: ([examples[i] for i in held_idx], labels[held_idx])}
    sets.update(own_validation(job.modality, spec["validation_limit"], spec["seed"]))
    if len(sets) == 1:
        log.write("note", message="shared data not found: only the upload's held-out split is scored")

    members = members_of(base)
    before = {name: {m.ref: create_model(m.ref).predict_proba(x) for m, _ in members} for name, (x, _) in sets.items()}
    weights, cascade = [w for _, w in members], base.config.get("cascade")

    def served(name, tuned_probs=None):  # what the ensemble answers (its cascade too), optionally with the tuned member
        return combine([tuned_probs if tuned_probs is not None and e.ref == member.ref else before[name][e.ref]
                        for e, _ in members], weights, cascade)

    for name, (_, y) in sets.items():
        m = classification_metrics(y, served(name).argmax(1))
        log.write("evaluation", phase="before", set=name, **score_summary(m))
    check_cancel()

    model = fresh_model(member)
    history = train(tuner, model, [examples[i] for i in train_idx], labels[train_idx], sets[UPLOAD_SET][0],
                    sets[UPLOAD_SET][1], spec["epochs"], device, log, check_cancel, spec["seed"])
    round_to_fp16(tuner.network(model))
    tuned = {name: model_probs(tuner, model, x, device) for name, (x, _) in sets.items()}

    def scores(probs_of) -> dict:
        return {name: classification_metrics(y, probs_of(name).argmax(1)) for name, (_, y) in sets.items()}

    member_before = scores(lambda name: before[name][member.ref])
    member_after = scores(lambda name: tuned[name])
    base_before = scores(served)
    base_after = scores(lambda name: served(name, tuned[name]))
    for name, m in base_after.items():
        log.write("evaluation", phase="after", set=name, **score_summary(m))
    check_cancel()

    staging = job.folder / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    training = {"job": job.id, "source": spec["source"], "examples": spec["counts"],
                "split": {"train": len(train_idx), "heldout": len(held_idx), "stratified": True, "seed": spec["seed"]},
                "epochs": spec["epochs"], "lr": tuner.lr, "batch_size": tuner.batch_size, "device": device_name,
                "seconds": round(time.time() - start, 1), "history": history,
                "command": f"python -m emotion_app.finetune run {job.id}"}
    staged, candidate = stage_models(staging, job, base, member, tuner, model, (member_before, member_after),
                                     (base_before, base_after), training, (sets[UPLOAD_SET][0], tuned[UPLOAD_SET]))
    result = {"base": base.ref, "member": member.ref, "candidate": candidate,
              "new_models": [folder_ref(f) for f in staged], "device": device_name,
              "seconds": round(time.time() - start, 1), "split": training["split"],
              "evaluations": {name: {"before": base_before[name], "after": base_after[name]} for name in sets}}
    log.write("saved", models=result["new_models"])
    return staged, result


def job_device():
    """CUDA when present, else the CPU less one core so the app stays responsive; and its name."""
    import torch
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        return device, f"cpu ({torch.get_num_threads()} threads)"
    return device, torch.cuda.get_device_name(device)


def folder_ref(folder: Path) -> str:
    """``id@version`` of a staged model folder."""
    config = json.loads((folder / "config.json").read_text())
    return f"{config['id']}@{config['version']}"


def stage_models(staging: Path, job: Job, base: ModelEntry, member: ModelEntry, tuner, model, member_scores: tuple,
                 base_scores: tuple, training: dict, check: tuple,
                 upload_note: str = "uploaded examples") -> tuple[list[Path], str]:
    """Write the tuned member's folder (and, for an ensemble, the ensemble's with it in
    place of the old member) into ``staging``; returns the folders and the model to activate.
    ``*_scores`` are (before, after) evaluations; ``check`` is (examples, the probabilities
    scored on them), which the saved member must reproduce."""
    from safetensors.torch import save_file

    from ..models.cards import write_model_folder
    spec = job.spec
    (member_before, member_after), (base_before, base_after) = member_scores, base_scores
    members = members_of(base)
    member_id, member_version = lineage_id(member.id), next_version(lineage_id(member.id))
    member_config = {**member.config, "id": member_id, "version": member_version, "default": False,
                     "fine_tuned_from": member.ref}
    tensors = tuner.tensors(model)
    staged = [write_model_folder(
        staging / f"{member_id}-v{member_version}", member_config,
        card_metrics(member_after, member, {**training, "fine_tuned_from": member.ref,
                                            "before": {k: score_summary(v) for k, v in member_before.items()}}),
        f"`{member.ref}` fine-tuned on {upload_note} ({spec['source']}, fine-tune job {job.id}). "
        f"`{UPLOAD_SET}` is the upload's held-out part; the other evaluations are samples "
        f"of at most {spec['validation_limit']} examples of the shared validation data.",
        files={"model.safetensors": lambda p: save_file(tensors, str(p))})]
    _check_reloaded(staged[0], member_config, *check)
    candidate = f"{member_id}@{member_version}"
    if base.architecture == "ensemble":
        ensemble_id, ensemble_version = lineage_id(base.id), next_version(lineage_id(base.id))
        ensemble_config = {**base.config, "id": ensemble_id, "version": ensemble_version, "default": False,
                           "fine_tuned_from": base.ref,
                           "members": [{"id": candidate if e.ref == member.ref else e.ref, "weight": w}
                                       for e, w in members]}
        staged.append(write_model_folder(
            staging / f"{ensemble_id}-v{ensemble_version}", ensemble_config,
            card_metrics(base_after, base, {**training, "fine_tuned_from": base.ref,
                                            "before": {k: score_summary(v) for k, v in base_before.items()}}),
            f"`{base.ref}` with its member `{member.ref}` replaced by `{candidate}`, fine-tuned on {upload_note} "
            f"({spec['source']}, job {job.id}); the member weights are the original ensemble's."))
        candidate = f"{ensemble_id}@{ensemble_version}"
    return staged, candidate


def _check_reloaded(folder: Path, config: dict, examples: list, expected: np.ndarray) -> None:
    """The staged folder, loaded as the registry will load it, must predict what was scored."""
    entry = ModelEntry(id=config["id"], modality=config["modality"], version=config["version"],
                       architecture=config["architecture"], folder=folder, config=config, source="user")
    model = ARCHITECTURES[entry.architecture](entry)
    model.entry = entry
    gap = float(np.abs(model.predict_proba(examples) - expected).max())
    if gap > 1e-3:
        raise RuntimeError(f"the saved model does not reproduce the scored one (max difference {gap:.4f})")


# --- comparison table ---------------------------------------------------------------------------

def per_class_f1(m: dict) -> dict[str, float]:
    """F1 of each class that occurs, from the confusion matrix."""
    cm = np.asarray(m["confusion_matrix"])
    out = {}
    for i, label in enumerate(LABELS):
        if m["support"][label]:
            tp, predicted, actual = cm[i, i], cm[:, i].sum(), cm[i].sum()
            out[label] = float(2 * tp / (predicted + actual)) if predicted + actual else 0.0
    return out


COMPARISON_HEADERS = ["evaluation", "measure", "before", "after", "change"]


MIN_HELDOUT_TO_TELL = 30  # below this, one row moves accuracy by over 3 points


def too_few_to_tell(result: dict) -> str | None:
    """A warning when the upload's held-out part is too small for its before/after to mean much."""
    n = result["evaluations"][UPLOAD_SET]["after"]["n"]
    if n >= MIN_HELDOUT_TO_TELL:
        return None
    return (f"Too few to tell: the upload's held-out part has {n} row(s), so one row moves its accuracy by "
            f"{1 / n:.0%}; judge the change on the shared validation sets, or upload more.")


def comparison_rows(result: dict) -> list[list]:
    """[set, measure, before, after, change] for every set: overall scores, then per-class recall and F1."""
    rows = []
    for name, pair in result["evaluations"].items():
        before, after = pair["before"], pair["after"]
        measures = [(k, before[k], after[k]) for k in ("accuracy", "weighted_f1", "macro_f1", "uar")]
        f1_before, f1_after = per_class_f1(before), per_class_f1(after)
        for label in f1_before:
            measures.append((f"{label} recall (n={before['support'][label]})", before["per_class_recall"][label],
                             after["per_class_recall"][label]))
            measures.append((f"{label} F1", f1_before[label], f1_after[label]))
        rows += [[f"{name} (n={before['n']})", k, round(b, 4), round(a, 4), round(a - b, 4)] for k, b, a in measures]
    return rows
