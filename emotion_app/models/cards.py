"""Writing a model folder: config, tensors, metrics and a Hub-style card, atomically.

The folder is complete or absent: it is written beside its destination and renamed
into place, so an interrupted training run or fine-tune never leaves half a model.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ..core.labels import LABELS


def _metrics_table(name: str, m: dict) -> str:
    rows = [f"### {name} (n={m['n']})", "",
            "| accuracy | weighted F1 | macro F1 | UAR |", "|---|---|---|---|",
            f"| {m['accuracy']:.4f} | {m['weighted_f1']:.4f} | {m['macro_f1']:.4f} | {m['uar']:.4f} |", "",
            "Per-class recall: " + ", ".join(f"{k} {v:.3f}" for k, v in m["per_class_recall"].items()), "",
            "Confusion matrix (rows: true, columns: predicted; " + ", ".join(LABELS) + "):", "", "```"]
    rows += [f"{LABELS[i]:>8} " + " ".join(f"{c:5d}" for c in row) for i, row in enumerate(m["confusion_matrix"])]
    return "\n".join(rows + ["```", ""])


def render_card(config: dict, metrics: dict, description: str) -> str:
    """A README.md model card with Hub front matter and every evaluation's table."""
    front = ["---", "library_name: emotion-app", "license: other", "tags:", "- emotion-recognition",
             f"- {config['modality']}", "---", ""]
    body = [f"# {config['id']} v{config['version']}", "", description.strip(), "",
            f"Architecture: `{config['architecture']}`. Classes: {', '.join(LABELS)}.", ""]
    if config.get("members"):
        body += ["Members and weights (normalised to sum to 1; how they were chosen: `training` in metrics.json):", ""]
        body += [f"- `{m['id']}`: {m['weight']:.4f}" for m in config["members"]] + [""]
        cascade = config.get("cascade")
        if cascade:
            first = config["members"][cascade["first_member"]]["id"]
            body += [f"Cascade: `{first}` runs on every input and answers alone where its top probability is at "
                     f"least {cascade['answers_alone_from']}; the other members run only on the rest.", ""]
    validation = metrics["evaluations"][metrics["validation"]]
    body += ["## Evaluation", "",
             f"Validation set: `{metrics['validation']}` (weighted F1 {validation['weighted_f1']:.4f}): the "
             "model's weight in late fusion. Headline: "
             f"`{metrics['headline']}`.", ""]
    for name, m in metrics.get("evaluations", {}).items():
        body.append(_metrics_table(name, m))
    calibration = config.get("calibration")
    if calibration:
        body += ["## Calibration", "",
                 f"Temperature {calibration['temperature']} fitted on `{calibration['fitted_on']}` "
                 f"(n={calibration['n']}); results whose top probability is below "
                 f"{calibration['uncertain_below']} are flagged `\"uncertain\": true`.", "",
                 "| | before | after |", "|---|---|---|",
                 f"| expected calibration error (15 bins) | {calibration['ece_before']} | {calibration['ece_after']} |",
                 f"| negative log-likelihood | {calibration['nll_before']} | {calibration['nll_after']} |", "",
                 f"Flagged uncertain: {calibration['uncertain_share']:.1%} of that set, right "
                 f"{calibration['uncertain_accuracy']} of the time; the rest right {calibration['certain_accuracy']}.",
                 ""]
    training = metrics.get("training", {})
    if training.get("licences"):
        body += ["## Licences", "", "The data this model learnt from, and the terms each comes under:", ""]
        body += [f"- {licence}" for licence in training["licences"]] + [""]
    if training:
        body += ["## Training", "", "```json", json.dumps(training, indent=2), "```", ""]
    return "\n".join(front + body)


def write_model_folder(folder: Path, config: dict, metrics: dict, description: str,
                       files: dict[str, callable] | None = None) -> Path:
    """Write ``folder`` atomically. ``metrics`` has ``evaluations`` and names two of them
    as ``validation`` (the weight in fusion and ensembles) and ``headline``. ``files`` maps
    a file name to ``writer(path)`` (e.g. ``lambda p: save_file(tensors, p)``)."""
    for role in ("validation", "headline"):
        if metrics.get(role) not in metrics.get("evaluations", {}):
            raise ValueError(f"metrics must name one of their evaluations as {role!r}, got {metrics.get(role)!r}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name, writer in (files or {}).items():
            writer(tmp / name)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / "README.md").write_text(render_card(config, metrics, description))
        tmp.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
        for path in tmp.iterdir():
            path.chmod(0o644)
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def card_description(folder: Path) -> str:
    """The description paragraph(s) of an existing card, to render it again."""
    config = json.loads((folder / "config.json").read_text())
    card = (folder / "README.md").read_text()
    return card.split(f"# {config['id']} v{config['version']}\n\n", 1)[1].split("\n\nArchitecture: `", 1)[0]


def update_model_folder(folder: Path, config: dict | None = None, metrics: dict | None = None) -> Path:
    """Rewrite a model folder's config and/or metrics (and so its card) atomically,
    keeping its weights and description."""
    folder = Path(folder)
    config = config or json.loads((folder / "config.json").read_text())
    metrics = metrics or json.loads((folder / "metrics.json").read_text())
    description = card_description(folder)
    others = [path.name for path in folder.iterdir() if path.name not in ("config.json", "metrics.json", "README.md")]
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        for name in others:  # copied aside first: the old folder is replaced by the new one
            shutil.copy2(folder / name, Path(tmp) / name)
        files = {name: (lambda target, source=Path(tmp) / name: shutil.copy2(source, target)) for name in others}
        return write_model_folder(folder, config, metrics, description, files=files)
