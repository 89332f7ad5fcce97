"""``training.speech_wild`` on a small made-up feature cache: the speaker head's
robustness table reads the leave-one-corpus-out heads that ``final`` already trained
(and agrees with their LOCO scores where it gives them all clips), and the app
standardises a clip's layer statistics as the heads were trained."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_app.models.audio import LayerStatsClassifier, LayerStatsHead, standardise_within_clip
from training import speech_wild as sw

SPEAKERS_PER_CORPUS, CLIPS_PER_CLASS = 3, 3


@pytest.fixture(scope="module")
def cache():
    """items, features (1 version, clips, layers, 768) with a per-class direction and a
    per-speaker offset (what speaker normalisation removes), classes per corpus."""
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(len(sw.LABELS), 2 * sw.DIM))
    classes = {"ravdess": range(7), "emodb": range(7), "nemo": (0, 2, 3, 4, 5, 6), "ased": (0, 2, 3, 4, 5)}
    items, rows = [], []
    for corpus in sw.CORPORA:
        for s in range(SPEAKERS_PER_CORPUS):
            voice = rng.normal(scale=3.0, size=2 * sw.DIM)
            for label in classes[corpus]:
                for _ in range(CLIPS_PER_CLASS):
                    items.append({"corpus": corpus, "speaker": f"{corpus}-{s}", "label": label})
                    rows.append(voice + direction[label] + rng.normal(size=(sw.N_LAYERS, 2 * sw.DIM)))
    X = np.stack(rows)[None].astype(np.float32)
    return items, X, np.zeros((1, len(items), 32), np.float32), sw.corpus_classes(items)


def test_speaker_robustness_reads_the_loco_heads_final_trained(cache, monkeypatch):
    items, X, P, classes_of = cache
    fast = {"steps": 60, "batch": 32}
    speaker_cfg = {**sw.recipe("weighted+cb+mask+spk+aug"), **fast}
    single_cfg = {**sw.recipe(sw.SINGLE_CLIP_RECIPE), **fast}
    folds = sw.speaker_folds(items, k=5)
    none_excluded = np.zeros(len(items), bool)
    _, loco, heads = sw.held_out_logits(items, X, P, speaker_cfg, [0], classes_of, folds, none_excluded)
    _, single_loco, _ = sw.held_out_logits(items, X, P, single_cfg, [0], classes_of, folds, none_excluded)
    assert set(heads) == set(sw.CORPORA)

    def no_training(*args, **kwargs):
        raise AssertionError("speaker_robustness trained a head of its own")
    monkeypatch.setattr(sw, "train_head", no_training)
    table = sw.speaker_robustness(items, X, heads, single_loco, classes_of)

    labels = np.array([it["label"] for it in items])
    corpus = np.array([it["corpus"] for it in items])
    for c in sw.CORPORA:
        held = corpus == c
        assert table["all clips"][c] == pytest.approx(sw.uar(labels[held], loco[held], classes_of[c]), abs=1e-6)
        assert table["single-clip heads alone"][c] == pytest.approx(
            sw.uar(labels[held], single_loco[held], classes_of[c]), abs=1e-6)
    # the class directions are learnable across corpora once each voice is taken out
    assert table["all clips"]["mean"] > 0.5


@pytest.mark.parametrize("norm", sorted(sw.WITHIN_CLIP))
def test_the_app_standardises_a_clip_as_its_head_was_trained(cache, norm):
    """Training's ``normalise`` and the served ``LayerStatsClassifier.standardise`` agree for
    each within-clip reading a recipe can export (config ``within_clip``)."""
    items, X, _, _ = cache
    trained, norm_stats = sw.normalise(X, items, {**sw.BASE, "norm": norm}, np.arange(len(items)))
    served = LayerStatsClassifier(LayerStatsHead(), norm_stats["mean"], norm_stats["std"],
                                  within_clip=sw.WITHIN_CLIP[norm]).standardise(X[0])
    np.testing.assert_allclose(served.numpy(), trained[0], atol=1e-4)


def test_halves_standardises_a_layers_means_and_spreads_apart():
    x = np.random.default_rng(1).normal(loc=(2.0,) * 4 + (50.0,) * 4, scale=(1.0,) * 4 + (9.0,) * 4, size=(3, 5, 8))
    for half in np.split(standardise_within_clip(x, "halves"), 2, axis=-1):
        np.testing.assert_allclose(half.mean(-1), 0, atol=1e-6)
        np.testing.assert_allclose(half.std(-1), 1, atol=1e-3)
    together = standardise_within_clip(x, "layer")
    assert abs(together[..., :4].mean()) > 0.5  # the spreads' scale sets where the means land
    with pytest.raises(ValueError, match="within_clip"):
        standardise_within_clip(x, "speaker")


def test_nuisance_projection_removes_the_voices_and_keeps_the_emotions(cache):
    """``nap``: the directions in which the made-up voices differ are projected out, so the
    speakers' mean clips coincide while the classes stay apart."""
    items, X, _, _ = cache
    cfg = {**sw.recipe(sw.SINGLE_CLIP_RECIPE), "nap": 8}
    train = np.arange(len(items))
    plain, _ = sw.normalise(X, items, {**cfg, "nap": 0}, train)
    projected, norm = sw.normalise(X, items, cfg, train)
    basis = norm["nuisance"]
    assert basis.shape == (sw.N_LAYERS, 2 * sw.DIM, 8)
    assert np.allclose(np.einsum("ldk,ldj->lkj", basis, basis), np.eye(8), atol=1e-4)

    speakers = np.array([it["speaker"] for it in items])
    labels = np.array([it["label"] for it in items])

    def spread(x, groups):  # how far the groups' mean clips lie apart
        return np.stack([x[0, groups == g].mean(0) for g in np.unique(groups)]).std(0).mean()
    assert spread(projected, speakers) < 0.5 * spread(plain, speakers)
    assert spread(projected, labels) > 0.8 * spread(plain, labels)

    # a saved head reads new clips the way it was trained: projected as well
    import torch
    head = sw.make_head(cfg, 0).eval()
    with torch.inference_mode():
        trained_on = head(torch.from_numpy(projected[0, :5]))[0].softmax(-1).numpy()
    meta = {**norm, "temperature": 1.0, "norm": cfg["norm"]}
    assert np.allclose(sw.predict_final(head, meta, X[0, :5], None), trained_on, atol=1e-5)
    with pytest.raises(ValueError, match="augmented versions"):
        sw.normalise(X, items, {**cfg, "nap_aug": 2}, train)


def test_the_ensemble_averages_its_members_probabilities_and_is_scored_as_served(tmp_path):
    """``ensemble`` writes the default voice model over one ``final`` folder per encoder:
    equal weights, and its leave-one-corpus-out scores are those of the members' mean
    probability (what the app's Ensemble serves), not of either member."""
    import json
    rng = np.random.default_rng(1)
    labels = np.concatenate([rng.integers(0, 7, n) for n in sw.SIZES.values()])
    finals = []
    for encoder, noise in (("whisper-tiny.en", 1.5), ("whisper-base", 1.5)):
        logits = {key: np.eye(7)[labels] * 2 + rng.normal(scale=noise, size=(len(labels), 7)) for key in ("loco", "oof")}
        folder = tmp_path / encoder
        folder.mkdir()
        np.savez(folder / "oof_and_loco_logits.npz", labels=labels, **logits)
        (folder / "config.json").write_text(json.dumps({"encoder": encoder}))
        finals.append((folder, logits))
    metrics = sw.ensemble([f for f, _ in finals], version=3, out=tmp_path / "weights")
    config = json.loads((tmp_path / "weights" / sw.ENSEMBLE_ID / "config.json").read_text())
    assert (config["id"], config["version"], config["default"], config["architecture"]) == (
        "audio-wild-ensemble", "3", True, "ensemble")
    assert config["members"] == [{"id": "audio-wild-whisper-layers", "weight": 0.5},
                                       {"id": "audio-wild-whisper-base-layers", "weight": 0.5}]
    mean = np.mean([sw._probs(logits["loco"]) for _, logits in finals], axis=0)
    assert metrics["evaluations"]["loco_all"]["accuracy"] == pytest.approx(np.mean(mean.argmax(1) == labels))
    members = [np.mean(sw._probs(logits["loco"]).argmax(1) == labels) for _, logits in finals]
    assert metrics["evaluations"]["loco_all"]["accuracy"] > max(members)  # two independent errors average out
    assert config["calibration"]["fitted_on"] == "leave-one-corpus-out"
