"""A queue's labels leave the app in two forms: a Hugging Face ``datasets`` dataset (every
labelled item with its votes, agreement and the model's prediction; media embedded, so
the folder is self-contained) and CSV manifests in the CLI's format (agreed labels only,
media copied beside the CSV), which ``python -m emotion_app evaluate`` reads as is.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

from ..core.labels import LABEL_TO_ID, LABELS
from .agreement import item_agreement
from .store import AnnotationStore

MEDIA_COLUMNS = ("image", "audio", "video")


def dataset_of(store: AnnotationStore, queue: str):
    """The queue's labelled items as a ``datasets.Dataset``.

    Columns: one per modality present (Image/Audio/Video features, or ``text``), ``label``
    (ClassLabel over the seven classes; -1 where the votes tie), every vote in ``labels`` /
    ``annotators`` / ``unsure``, ``agreement`` (share of votes for the top label),
    ``complete`` (has the required number of labels) and the stored model prediction."""
    import datasets

    rows = store.labelled_items(queue)
    if not rows:
        raise ValueError(f"queue {queue!r} has no labelled items to export")
    k = store.required_labels(queue)
    present = {item.modality for item, _ in rows}
    media = [m for m in MEDIA_COLUMNS if m in present]
    data: dict[str, list] = {m: [] for m in media}
    if "text" in present:
        data["text"] = []
    for key in ("modality", "label", "labels", "annotators", "unsure", "agreement", "complete",
                "prediction", "prediction_model", "sha256", "source", "original_name"):
        data[key] = []
    for item, votes in rows:
        for m in media:
            data[m].append({"bytes": item.media.read_bytes(), "path": item.media.name} if item.modality == m else None)
        if "text" in data:
            data["text"].append(item.text)
        majority, share = item_agreement([v.label for v in votes])
        predicted = store.stored_prediction(item.id) or {}
        data["modality"].append(item.modality)
        data["label"].append(LABEL_TO_ID[majority] if majority else -1)
        data["labels"].append([v.label for v in votes])
        data["annotators"].append([v.annotator for v in votes])
        data["unsure"].append([v.unsure for v in votes])
        data["agreement"].append(share)
        data["complete"].append(len(votes) >= k)
        data["prediction"].append(predicted.get("label"))
        data["prediction_model"].append(predicted.get("model"))
        data["sha256"].append(item.sha256)
        data["source"].append(item.source)
        data["original_name"].append(item.original_name)

    blob = datasets.Features({"bytes": datasets.Value("binary"), "path": datasets.Value("string")})
    strings = datasets.List(datasets.Value("string"))
    plain = {"text": datasets.Value("string"), "modality": datasets.Value("string"),
             "label": datasets.ClassLabel(names=list(LABELS)), "labels": strings, "annotators": strings,
             "unsure": datasets.List(datasets.Value("bool")), "agreement": datasets.Value("float32"),
             "complete": datasets.Value("bool"), "prediction": datasets.Value("string"),
             "prediction_model": datasets.Value("string"), "sha256": datasets.Value("string"),
             "source": datasets.Value("string"), "original_name": datasets.Value("string")}
    raw = datasets.Features({name: blob if name in media else plain[name] for name in data})
    # Built from raw bytes, then cast: encoding Audio/Video examples directly needs torchcodec.
    typed = {"image": datasets.Image(), "audio": datasets.Audio(), "video": datasets.Video()}
    return datasets.Dataset.from_dict(data, features=raw).cast(
        datasets.Features({name: typed[name] if name in media else raw[name] for name in data}))


def export_dataset(store: AnnotationStore, queue: str, out_dir, push_to_hub: str | None = None):
    """Write ``out_dir/dataset`` (``datasets.load_from_disk``) and ``out_dir/<queue>.parquet``;
    push to a Hub dataset repo when asked (needs a token). Returns the dataset."""
    out_dir = Path(out_dir)
    ds = dataset_of(store, queue)
    ds.save_to_disk(str(out_dir / "dataset"))
    ds.to_parquet(str(out_dir / f"{queue_slug(queue)}.parquet"))
    if push_to_hub:
        from huggingface_hub import get_token
        token = get_token()
        if not token:
            raise ValueError("pushing to the Hub needs a token: set HF_TOKEN or run `huggingface-cli login`")
        ds.push_to_hub(push_to_hub, token=token, private=True)
    return ds


def export_csv(store: AnnotationStore, queue: str, path, modality: str | None = None) -> int:
    """Write the agreed labels as a CLI manifest: ``text,label``, or ``path,label`` with the
    media copied to ``media/`` beside the CSV (paths relative to it). Returns the row count.

    A manifest holds one modality (the CLI's ``--modality``); a mixed queue needs ``modality``."""
    agreed = store.agreed_items(queue)
    modalities = sorted({item.modality for item, _ in agreed})
    if modality is None:
        if len(modalities) > 1:
            raise ValueError(f"queue {queue!r} mixes {', '.join(modalities)}: choose one modality per CSV")
        modality = modalities[0] if modalities else "text"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for item, label in agreed:
        if item.modality != modality:
            continue
        if modality == "text":
            rows.append((item.text, label))
            continue
        target = path.parent / "media" / item.media.name
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            _link_or_copy(item.media, target)
        rows.append((target.relative_to(path.parent).as_posix(), label))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text" if modality == "text" else "path", "label"])
        writer.writerows(rows)
    os.replace(tmp, path)
    return len(rows)


def export_queue(store: AnnotationStore, queue: str, out_dir, push_to_hub: str | None = None) -> dict[str, Path]:
    """Everything at once: the dataset, its parquet file and one CSV per modality."""
    out_dir = Path(out_dir)
    export_dataset(store, queue, out_dir, push_to_hub)
    written = {"dataset": out_dir / "dataset", "parquet": out_dir / f"{queue_slug(queue)}.parquet"}
    for modality in sorted({item.modality for item, _ in store.agreed_items(queue)}):
        export_csv(store, queue, out_dir / f"{modality}.csv", modality)
        written[f"{modality}_csv"] = out_dir / f"{modality}.csv"
    return written


def queue_slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "queue"


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs no space; across file systems, copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
