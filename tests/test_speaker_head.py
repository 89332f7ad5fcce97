"""Clips read speaker by speaker (``classify_by_speaker``, ``predict --by-speaker``): the
voice model's speaker head reads a speaker with enough clips, each segment standardised
by that speaker's segments; other speakers and bad clips are read as before, in order.

The clips are the project's own examples at other loudnesses and offsets."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from emotion_app.media import whisper_layers
from emotion_app.media.audio import SAMPLE_RATE, load_audio
from emotion_app.models import audio as audio_models
from emotion_app.models.audio import SpeakerStats
from emotion_app.pipelines import resolve
from emotion_app.pipelines.audio import SPEAKER_HEAD_MODEL, classify_by_speaker

from .conftest import ROOT
from .test_cli import run_cli

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """12 clips of speaker 'ana' (one unreadable), 2 of 'ben', 1 of nobody named: (csv path, rows)."""
    folder = tmp_path_factory.mktemp("speakers")
    waves = [load_audio(EXAMPLES / f"speech_{emotion}.wav") for emotion in ("happy", "angry", "sad")]
    rows = []
    for i in range(11):
        wave = np.concatenate([np.zeros(int(0.1 * i * SAMPLE_RATE), np.float32), waves[i % 3]]) * (0.4 + 0.05 * i)
        sf.write(folder / f"ana_{i}.wav", wave, SAMPLE_RATE)
        rows.append((f"ana_{i}.wav", "ana"))
    (folder / "ana_broken.wav").write_bytes(b"RIFF not really a wave")
    rows.insert(5, ("ana_broken.wav", "ana"))
    for i in range(2):
        sf.write(folder / f"ben_{i}.wav", waves[i] * 0.7, SAMPLE_RATE)
        rows.insert(3 * i, (f"ben_{i}.wav", "ben"))
    rows.append(("ben_1.wav", ""))
    path = folder / "clips.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "speaker"), *rows])
    return path, rows


def test_a_speaker_with_enough_clips_is_read_by_the_speaker_head_in_input_order(manifest, monkeypatch):
    path, rows = manifest
    encoded = []
    original = whisper_layers.layer_stats
    monkeypatch.setattr(whisper_layers, "layer_stats",
                        lambda wave, *encoder: encoded.append(len(wave)) or original(wave, *encoder))
    results = list(classify_by_speaker([str(path.parent / p) for p, _ in rows], [s for _, s in rows],
                                       transcribe=False))
    assert [r["input"].rsplit("/", 1)[1] for r in results] == [p for p, _ in rows]
    broken = results[[p for p, _ in rows].index("ana_broken.wav")]
    assert "error" in broken and set(broken) == {"input", "error", "speaker"}
    ana = [r for r, (_, s) in zip(results, rows) if s == "ana" and "error" not in r]
    ben = [r for r, (_, s) in zip(results, rows) if s == "ben"]
    assert len(ana) == 11 and all(r["speaker_normalised"] and r["speaker_clips"] == 11 for r in ana)
    assert all(not r["speaker_normalised"] and "fewer than the 5" in r["notes"][-1] for r in ben)
    nobody = results[-1]
    assert not nobody["speaker_normalised"] and "speaker" not in nobody and "no speaker given" in nobody["notes"][-1]
    # Whisper ran once per segment of a speaker read together (their statistics are reused),
    # twice for a speaker with too few clips (statistics first, then read one clip at a time)
    assert len(encoded) == sum(len(r["segments"]) for r in ana) + 2 * sum(len(r["segments"]) for r in ben) + \
        len(nobody["segments"])
    for r in ana + ben:
        assert abs(sum(r["probs"].values()) - 1) < 1e-3 and "uncertain" in r


def test_one_clip_listed_many_times_is_one_clip_of_its_speaker(manifest):
    path, rows = manifest
    clip = str(path.parent / "ana_0.wav")
    results = list(classify_by_speaker([clip, f"{path.parent}/./ana_0.wav"] * 3, ["  dup", "dup"] * 3,
                                       transcribe=False))
    assert len(results) == 6 and all(r["speaker"] == "dup" and r["speaker_clips"] == 1 for r in results)
    assert not any(r["speaker_normalised"] for r in results) and "1 readable distinct clip" in results[0]["notes"][-1]
    with pytest.raises(ValueError, match="2 inputs but 1 speakers"):
        list(classify_by_speaker([clip, clip], ["dup"]))


def test_the_speaker_head_ignores_what_every_clip_of_the_speaker_shares(manifest):
    """Standardised by the speaker's own statistics, a shift common to all their clips (a
    voice, a room, a microphone) changes nothing; the clips' differences remain."""
    path, rows = manifest
    model = resolve("audio", SPEAKER_HEAD_MODEL)
    clips = [load_audio(path.parent / p) for p, s in rows if s == "ana" and "broken" not in p]
    profile = SpeakerStats()
    profile.add_waves(clips)
    np.testing.assert_allclose(profile.mean, np.stack(list(profile.known.values())).mean(0), rtol=1e-5, atol=1e-6)
    shifted = SpeakerStats()
    shifted.add({key: stats + 0.5 for key, stats in profile.known.items()})
    probs = model.for_speaker(profile).predict_proba(clips)
    np.testing.assert_allclose(model.for_speaker(shifted).predict_proba(clips), probs, atol=1e-4)
    assert len({int(p.argmax()) for p in probs}) > 1


def test_a_speakers_statistics_are_kept_for_a_bounded_number_of_segments(manifest, monkeypatch):
    path, rows = manifest
    model = resolve("audio", SPEAKER_HEAD_MODEL)
    clips = [load_audio(path.parent / p) for p, s in rows if s == "ana" and "broken" not in p]
    whole = SpeakerStats()
    whole.add_waves(clips)
    monkeypatch.setattr(audio_models, "MAX_KNOWN_SEGMENTS", 3)
    capped = SpeakerStats()
    capped.add_waves(clips)
    assert len(capped.known) == 3 and capped.count == len(clips)
    np.testing.assert_allclose(capped.std, whole.std, rtol=1e-5)
    np.testing.assert_allclose(model.for_speaker(capped).predict_proba(clips),
                               model.for_speaker(whole).predict_proba(clips), atol=1e-5)


def test_predict_by_speaker_on_the_command_line(manifest, tmp_path):
    path, rows = manifest
    proc = run_cli("predict", "--modality", "audio", "--manifest", str(path), "--by-speaker", "--no-transcribe", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(rows) and sum("error" in r for r in lines) == 1
    assert sum(r.get("speaker_normalised", False) for r in lines) == 11
    proc = run_cli("predict", "--modality", "audio", "--manifest", str(path), "--by-speaker", "--no-transcribe")
    plain = proc.stdout.splitlines()
    assert len(plain) == len(rows) and sum("read with speaker ana's 11 clips" in line for line in plain) == 11
    for usage in (("predict", str(path.parent / "ana_0.wav")), ("batch", "--input-dir", str(path.parent), "--out",
                                                                  str(tmp_path / "out"))):
        proc = run_cli(*usage, "--modality", "audio", "--by-speaker")
        assert proc.returncode == 2 and "--by-speaker reads an audio --manifest" in proc.stderr
    proc = run_cli("batch", "--modality", "audio", "--manifest", str(path), "--by-speaker", "--batch-size", "4",
                   "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "each speaker's clips are one batch" in proc.stderr
    no_speaker = tmp_path / "no_speaker.csv"
    no_speaker.write_text("path\nx.wav\n")
    proc = run_cli("predict", "--modality", "audio", "--manifest", str(no_speaker), "--by-speaker")
    assert proc.returncode != 0 and "needs a 'speaker' column" in proc.stderr
    proc = run_cli("predict", "--modality", "audio", "--manifest", str(path), "--by-speaker",
                   "--model", "audio-whisper-attn")
    assert proc.returncode != 0 and "has no speaker head" in proc.stderr


def test_batch_on_ray_reads_each_speaker_as_one_batch(manifest, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq
    path, rows = manifest
    out = tmp_path / "out"
    proc = run_cli("batch", "--modality", "audio", "--manifest", str(path), "--by-speaker", "--no-transcribe",
                   "--out", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out).sort_values("index")
    assert list(table["input"].str.rsplit("/", n=1).str[1]) == [p for p, _ in rows]
    details = [json.loads(d) if isinstance(d, str) else {} for d in table["details"]]
    assert sum(d.get("speaker_normalised", False) for d in details) == 11
    assert table["error"].notna().sum() == 1
    speakers_per_shard = [set(json.loads(d)["speaker"] for d in pq.read_table(shard).column("details").to_pylist()
                              if d and "speaker" in json.loads(d)) for shard in out.glob("part-*.parquet")]
    assert sorted(map(sorted, speakers_per_shard)) == [[], ["ana"], ["ben"]]  # [] : the clip with no speaker
