import json
import os
import shutil
import subprocess
import sys

import pytest

from emotion_app.core import paths
from emotion_app.core.errors import ModelNotFound
from emotion_app.core.paths import BUNDLED_WEIGHTS
from emotion_app.models.registry import active_model, create_model, get_entry, list_models, set_active
from emotion_app.train.datasets import DATA_LICENCES
from training.text_encoder import MINILM_LICENCE

from .conftest import ROOT


def test_every_bundled_folder_is_a_complete_publishable_model():
    entries = [e for e in list_models() if e.source == "bundled"]
    assert entries, "no bundled models"
    for e in entries:
        files = {p.name for p in e.folder.iterdir()}
        assert {"config.json", "metrics.json", "README.md"} <= files, e.id
        assert all(p.is_file() for p in e.folder.iterdir()), f"{e.id}: nested folders"
        weightless = e.config["architecture"] in ("ensemble", "late-fusion")  # weights live in members/cards
        assert weightless or any(f.endswith(".safetensors") for f in files), e.id
        card = (e.folder / "README.md").read_text()
        assert card.startswith("---\n") and "## Evaluation" in card, e.id
        assert e.metrics["evaluations"], f"{e.id}: a registered model must be evaluated"
        named = e.metrics["training"].get("licences", [])
        assert named and set(named) <= set(DATA_LICENCES.values()) | {MINILM_LICENCE}, \
            f"{e.id}: the card must name the licence of each corpus it learnt from"
        assert all(f"- {licence}\n" in card.split("## Licences")[1] for licence in named), e.id


def test_weights_budget():
    total = sum(p.stat().st_size for p in BUNDLED_WEIGHTS.rglob("*") if p.is_file())
    assert total < 150 * 1024 * 1024


def test_create_model_is_cached_and_gives_probabilities():
    model = create_model("text-tfidf-lr")
    assert create_model("text-tfidf-lr@1") is model
    probs = model.predict_proba(["what a lovely day", "this is disgusting"])
    assert probs.shape == (2, 7)
    assert abs(probs.sum(axis=1) - 1).max() < 1e-4


def test_unknown_model_lists_what_is_available():
    with pytest.raises(ModelNotFound, match="available: .*text-tfidf-lr@1"):
        get_entry("no-such-model")


def test_active_model_can_be_switched_and_reset():
    default = active_model("text")
    set_active("text", "text-tfidf-lr@1")
    assert active_model("text").ref == "text-tfidf-lr@1"
    set_active("text", None)
    assert active_model("text") == default
    with pytest.raises(ValueError, match="not image"):
        set_active("image", "text-tfidf-lr")


def test_user_folder_versions_are_listed_beside_bundled(tmp_path, monkeypatch):
    user = paths.user_weights_dir()
    copy = user / "text-tfidf-lr-v2"
    shutil.copytree(BUNDLED_WEIGHTS / "text-tfidf-lr", copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "version": "2"}))
    refs = {e.ref: e.source for e in list_models("text")}
    assert refs["text-tfidf-lr@1"] == "bundled" and refs["text-tfidf-lr@2"] == "user"
    assert get_entry("text-tfidf-lr").version == "2"  # newest by default


def test_hub_models_load_from_a_local_snapshot_without_network(tmp_path):
    """The Hub path: a repo in EMOTION_APP_HUB_MODELS resolves through huggingface_hub's
    cache layout (what snapshot_download leaves behind) with HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--acme--text-emotion" / "snapshots" / commit
    shutil.copytree(BUNDLED_WEIGHTS / "text-tfidf-lr", snapshot)
    config = json.loads((snapshot / "config.json").read_text())
    config.update(id="text-hub", version="7", hub_repo="acme/text-emotion")
    (snapshot / "config.json").write_text(json.dumps(config))
    (cache / "models--acme--text-emotion" / "refs").mkdir()
    (cache / "models--acme--text-emotion" / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "EMOTION_APP_HUB_MODELS": "acme/text-emotion", "EMOTION_APP_DATA": str(tmp_path / "d")}
    out = subprocess.run([sys.executable, "-m", "emotion_app", "predict", "--modality", "text", "--model",
                          "text-hub", "--json", "I am so angry at you"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["model"] == "text-hub@7" and set(result["probs"]) == {
        "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}


def test_requests_arriving_together_at_a_cold_app_share_one_loaded_model():
    import threading

    from emotion_app.models.registry import clear_cache, create_model
    clear_cache()
    start, loaded = threading.Barrier(4), []

    def load():
        start.wait()
        loaded.append(create_model("text-ensemble"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loaded) == 4 and all(model is loaded[0] for model in loaded)


def test_seed_averaged_voice_heads_read_as_one_head():
    """The served voice head averages several seeds' heads: its logits are the log of
    their mean probability, its embedding their pre-logits side by side."""
    import torch

    from emotion_app.models.audio import SeedAveragedHeads
    torch.manual_seed(0)
    heads = SeedAveragedHeads(3, hidden=16).eval()
    x = torch.randn(4, 5, 768)
    with torch.inference_mode():
        expected = torch.stack([member(x).softmax(-1) for member in heads.members]).mean(0)
        assert torch.allclose(heads(x).softmax(-1), expected, atol=1e-6)
        assert heads.forward_features(x).shape == (4, heads.embedding_dim) == (4, 48)
