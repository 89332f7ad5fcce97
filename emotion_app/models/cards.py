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
        body += ["Members and weights (validation weighted F1, normalised):", ""]
        body += [f"- `{m['id']}`: {m['weight']:.4f}" for m in config["members"]] + [""]
    validation = metrics["evaluations"][metrics["validation"]]
    body += ["## Evaluation", "",
             f"Validation set: `{metrics['validation']}` (weighted F1 {validation['weighted_f1']:.4f}): the "
             "model's weight in late fusion. Headline: "
             f"`{metrics['headline']}`.", ""]
    for name, m in metrics.get("evaluations", {}).items():
        body.append(_metrics_table(name, m))
    if metrics.get("training"):
        body += ["## Training", "", "```json", json.dumps(metrics["training"], indent=2), "```", ""]
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
