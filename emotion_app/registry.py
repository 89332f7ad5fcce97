"""The model registry: a dict of entries found in weights folders, and loaders by architecture.

Every model is a folder (``config.json`` + ``*.safetensors`` + ``README.md`` card +
``metrics.json``) that ``huggingface_hub.upload_folder`` can publish as is. Folders are
found under the bundled ``weights/``, the user's fine-tuned ``<data>/weights/``, and,
for Hub repos named in ``EMOTION_APP_HUB_MODELS``, the Hub (or its local cache when
offline). Architectures register a loader with ``@register_architecture``; a model is
built with ``create_model(id)``, and cached.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_WEIGHTS = ROOT / "weights"
MODALITIES = ("image", "text", "audio", "video", "fusion")

ARCHITECTURES: dict[str, Callable[["ModelEntry"], "Model"]] = {}
# Modules whose import registers architectures; imported lazily so that listing models
# never pays for torch or the speech stack.
_ARCHITECTURE_MODULES = ("emotion_app.text", "emotion_app.text_encoder", "emotion_app.ensemble", "emotion_app.image",
                         "emotion_app.audio", "emotion_app.fusion")


class ModelNotFound(KeyError):
    """No model with that id, or none at all for a modality."""

    def __str__(self):
        return str(self.args[0])


def register_architecture(name: str):
    """Decorator: ``loader(entry) -> Model`` builds the model in ``entry.folder``."""
    def decorate(loader):
        ARCHITECTURES[name] = loader
        return loader
    return decorate


def data_dir() -> Path:
    """Where user state lives: EMOTION_APP_DATA, else /data on a Space with storage, else ./data."""
    if os.environ.get("EMOTION_APP_DATA"):
        return Path(os.environ["EMOTION_APP_DATA"])
    if os.environ.get("SPACE_ID") and os.access("/data", os.W_OK):
        return Path("/data")
    return ROOT / "data"


def user_weights_dir() -> Path:
    return data_dir() / "weights"


@dataclass(frozen=True)
class ModelEntry:
    id: str
    modality: str
    version: str
    architecture: str
    folder: Path
    config: dict = field(hash=False, compare=False)
    hub_repo: str | None = None
    source: str = "bundled"  # bundled | user | hub

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def metrics(self) -> dict:
        path = self.folder / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def validation_f1(self) -> float:
        """Mean weighted F1 over the card's validation sets: what fusion weights rest on."""
        scores = [m["weighted_f1"] for m in self.metrics.get("evaluations", {}).values()]
        return float(np.mean(scores)) if scores else 0.0


class Model:
    """What every loaded model offers: probabilities over LABELS for a batch of inputs."""

    entry: ModelEntry

    def predict_proba(self, batch) -> np.ndarray:  # (len(batch), 7)
        raise NotImplementedError

    def reading_notes(self, item) -> list[str]:
        """What the model will not see of one input (e.g. text past its token window)."""
        return []


def _entry_from_folder(folder: Path, source: str) -> ModelEntry:
    config = json.loads((folder / "config.json").read_text())
    return ModelEntry(id=config["id"], modality=config["modality"], version=str(config["version"]),
                      architecture=config["architecture"], folder=folder, config=config,
                      hub_repo=config.get("hub_repo"), source=source)


def _hub_folders() -> list[Path]:
    repos = [r.strip() for r in os.environ.get("EMOTION_APP_HUB_MODELS", "").split(",") if r.strip()]
    if not repos:
        return []
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE

    folders = []
    for repo in repos:
        try:
            folders.append(Path(snapshot_download(repo, local_files_only=HF_HUB_OFFLINE)))
        except Exception as exc:  # an unreachable repo must not hide the local models
            print(f"[registry] skipping Hub model {repo}: {exc}")
    return folders


def list_models(modality: str | None = None) -> list[ModelEntry]:
    """Every model available, bundled first; a user or Hub folder with the same id and
    a different version is a separate entry (id@version)."""
    found: dict[str, ModelEntry] = {}
    sources = [(BUNDLED_WEIGHTS, "bundled"), (user_weights_dir(), "user")]
    folders = [(f, src) for base, src in sources if base.is_dir()
               for f in sorted(base.iterdir()) if (f / "config.json").exists()]
    folders += [(f, "hub") for f in _hub_folders()]
    for folder, source in folders:
        entry = _entry_from_folder(folder, source)
        found.setdefault(entry.ref, entry)
    return [e for e in found.values() if modality in (None, e.modality)]


def get_entry(model: str) -> ModelEntry:
    """Look up ``id`` (newest version) or ``id@version``."""
    model_id, _, version = model.partition("@")
    matches = [e for e in list_models() if e.id == model_id and version in ("", e.version)]
    if not matches:
        known = ", ".join(sorted({e.ref for e in list_models()})) or "none"
        raise ModelNotFound(f"unknown model {model!r}; available: {known}")
    return max(matches, key=lambda e: _version_key(e.version))


def _version_key(version: str):
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _active_file() -> Path:
    return data_dir() / "active.json"


def active_model(modality: str) -> ModelEntry:
    """The user's choice for a modality if set, else the bundled default."""
    chosen = json.loads(_active_file().read_text()) if _active_file().exists() else {}
    if modality in chosen:
        try:
            return get_entry(chosen[modality])
        except ModelNotFound:
            pass  # the chosen version was deleted: fall back to the default
    entries = list_models(modality)
    if not entries:
        raise ModelNotFound(f"no {modality} model is available")
    defaults = [e for e in entries if e.config.get("default")]
    return (defaults or entries)[0]


def set_active(modality: str, model: str | None) -> None:
    """Make ``model`` (id or id@version) the active one; None restores the default."""
    path = _active_file()
    chosen = json.loads(path.read_text()) if path.exists() else {}
    if model is None:
        chosen.pop(modality, None)
    else:
        entry = get_entry(model)
        if entry.modality != modality:
            raise ValueError(f"{entry.ref} is a model for {entry.modality}, not {modality}")
        chosen[modality] = entry.ref
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(chosen, indent=2))
    os.replace(tmp, path)


def create_model(model: str) -> Model:
    """Load (once) and return the model ``id`` or ``id@version``."""
    return _load(get_entry(model).ref)


@lru_cache(maxsize=None)
def _load(ref: str) -> Model:
    entry = get_entry(ref)
    if entry.architecture not in ARCHITECTURES:
        import importlib
        for module in _ARCHITECTURE_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # a real missing dependency, not an absent module
                    raise
            if entry.architecture in ARCHITECTURES:
                break
    if entry.architecture not in ARCHITECTURES:
        raise RuntimeError(f"{entry.ref}: no loader for architecture {entry.architecture!r}")
    model = ARCHITECTURES[entry.architecture](entry)
    model.entry = entry
    return model


def clear_cache() -> None:
    _load.cache_clear()
