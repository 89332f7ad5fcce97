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
import logging
import os
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..core.errors import ModelNotFound
from ..core.paths import BUNDLED_WEIGHTS, data_dir, user_weights_dir
from .base import Model, ModelEntry

log = logging.getLogger(__name__)

MODALITIES = ("image", "text", "audio", "video", "fusion")

ARCHITECTURES: dict[str, Callable[["ModelEntry"], "Model"]] = {}
# Modules whose import registers architectures; imported lazily so that listing models
# never pays for torch or the speech stack.
_ARCHITECTURE_MODULES = tuple(f"emotion_app.models.{name}" for name in ("text", "text_encoder", "ensemble", "image",
                                                                       "audio", "fusion"))


def register_architecture(name: str):
    """Decorator: ``loader(entry) -> Model`` builds the model in ``entry.folder``."""
    def decorate(loader):
        ARCHITECTURES[name] = loader
        return loader
    return decorate


def _entry_from_folder(folder: Path, source: str) -> ModelEntry:
    config = json.loads((folder / "config.json").read_text())
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return ModelEntry(id=config["id"], modality=config["modality"], version=str(config["version"]),
                      architecture=config["architecture"], folder=folder, config=config, metrics=metrics,
                      hub_repo=config.get("hub_repo"), source=source)


def _hub_folders(repos: tuple[str, ...]) -> list[Path]:
    if not repos:
        return []
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE

    folders = []
    for repo in repos:
        try:
            folders.append(Path(snapshot_download(repo, local_files_only=HF_HUB_OFFLINE)))
        except Exception as exc:  # an unreachable repo must not hide the local models
            log.warning("skipping Hub model %s: %s", repo, exc)
    return folders


def _sources() -> tuple:
    """What the index is built from: the user's weights folder (with its modification
    time, which changes when a fine-tune publishes a folder into it, from any process)
    and the Hub repos named in the environment."""
    repos = tuple(r.strip() for r in os.environ.get("EMOTION_APP_HUB_MODELS", "").split(",") if r.strip())
    user_dir = user_weights_dir()
    try:
        changed = user_dir.stat().st_mtime_ns
    except OSError:
        changed = None
    return user_dir, changed, repos


_index_lock = threading.Lock()
_index: dict = {"sources": None, "entries": {}}


def _scan(sources) -> dict[str, ModelEntry]:
    user_dir, _, repos = sources
    found: dict[str, ModelEntry] = {}
    folders = [(f, src) for base, src in ((BUNDLED_WEIGHTS, "bundled"), (user_dir, "user")) if base.is_dir()
               for f in sorted(base.iterdir()) if (f / "config.json").exists()]
    folders += [(f, "hub") for f in _hub_folders(repos)]
    for folder, source in folders:
        try:
            entry = _entry_from_folder(folder, source)
        except (OSError, ValueError, KeyError) as exc:  # one broken folder must not hide the others
            log.warning("skipping model folder %s: %s", folder, exc)
            continue
        found.setdefault(entry.ref, entry)
    return found


def refresh() -> None:
    """Scan the model folders again. ``_entries`` does it when the sources change; call
    it after changing a folder in place."""
    with _index_lock:
        sources = _sources()
        _index.update(sources=sources, entries=_scan(sources))


def _entries() -> dict[str, ModelEntry]:
    """The in-memory index (ref -> entry), scanned once per set of sources."""
    if _index["sources"] != _sources():
        refresh()
    return _index["entries"]


def list_models(modality: str | None = None) -> list[ModelEntry]:
    """Every model available, bundled first; a user or Hub folder with the same id and
    a different version is a separate entry (id@version)."""
    return [e for e in _entries().values() if modality in (None, e.modality)]


def get_entry(model: str) -> ModelEntry:
    """Look up ``id`` (newest version) or ``id@version``."""
    model_id, _, version = model.partition("@")
    matches = [e for e in list_models() if e.id == model_id and version in ("", e.version)]
    if not matches:  # published since the last scan, perhaps by another process
        refresh()
        matches = [e for e in list_models() if e.id == model_id and version in ("", e.version)]
    if not matches:
        known = ", ".join(sorted({e.ref for e in list_models()})) or "none"
        raise ModelNotFound(f"unknown model {model!r}; available: {known}")
    return max(matches, key=lambda e: _version_key(e.version))


def _version_key(version: str):
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _active_file() -> Path:
    return data_dir() / "active.json"


def _chosen() -> dict:
    """The user's active-model choices. An unreadable file is reported and read as no
    choice (the bundled defaults serve); it is kept, and set aside before the next write."""
    path = _active_file()
    try:
        chosen = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(chosen, dict):
            raise ValueError("not a JSON object")
        return chosen
    except (OSError, ValueError) as exc:
        log.error("%s is unreadable (%s): serving the bundled default models", path, exc)
        return {}


def active_model(modality: str) -> ModelEntry:
    """The user's choice for a modality if set, else the bundled default."""
    chosen = _chosen()
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
    chosen = _chosen()
    if path.exists() and not chosen and path.read_bytes().strip() not in (b"", b"{}"):
        kept = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        os.replace(path, kept)  # never written over: what was in it may matter to someone
        log.error("set %s aside as %s", path, kept)
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


# One model loads at a time (re-entrant: an ensemble loads its members). Two requests
# arriving together at a cold app would otherwise load the same model twice, and import
# transformers' lazy modules from two threads at once, which fails ("cannot import name
# 'BertConfig'": measured once in 146 requests of benchmarks/load_test.py).
_LOADING = threading.RLock()


def create_model(model: str) -> Model:
    """Load (once) and return the model ``id`` or ``id@version``."""
    ref = get_entry(model).ref
    with _LOADING:
        return _load(ref)


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
