"""Speech emotion: two acoustic models, a speech timeline, and the transcript's text emotion.

A clip is decoded (``audio_io``), Silero VAD finds the speech, and the speech is cut into
timeline segments of at most 8 s. Each segment is classified by the audio model (by
default an ensemble of a frozen Whisper encoder + attention pooling and a log-mel CRNN trained from
scratch); the clip's label is the duration-weighted mean over segments. Optionally the
speech is transcribed with Whisper tiny.en and the transcript classified by the text
model, and both are fused late, weighted by each model's validation weighted F1.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from .audio_io import MIN_SPEECH_SECONDS, SAMPLE_RATE, load_audio, loud_spans, speech_segments, speech_spans
from .inputs import InputError
from .labels import LABELS
from .pipeline import classify, error_result, label_probs, make_result, resolve
from .registry import Model, ModelEntry, register_architecture

N_MELS = 64


@lru_cache(maxsize=1)
def _mel_transform():
    import torchaudio
    return torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=512, win_length=400,
                                                hop_length=160, f_min=50.0, f_max=7600.0, n_mels=N_MELS)


def log_mel(wave: np.ndarray) -> np.ndarray:
    """(frames at 100 per second, 64) log-mel, normalised per clip: each band's mean is
    removed and the whole divided by its std, so microphone, gain and speaker timbre
    matter less than how the voice moves."""
    x = torch.log(_mel_transform()(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))) + 1e-6)
    x = x - x.mean(dim=1, keepdim=True)
    return (x / (x.std() + 1e-5)).T.numpy()


def whisper_states(wave: np.ndarray) -> np.ndarray:
    """(frames at 50 per second, 384) frozen Whisper tiny.en encoder states."""
    from .transcribe import whisper_encode
    return whisper_encode(wave)


class AttentionPool(nn.Module):
    """Softmax-weighted mean over valid frames: emotional cues are sparse in time."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x, mask, with_std: bool = False):
        weights = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(dim=1).unsqueeze(-1)
        mean = (weights * x).sum(dim=1)
        if not with_std:
            return mean
        std = ((weights * (x - mean.unsqueeze(1)) ** 2).sum(dim=1) + 1e-6).sqrt()
        return torch.cat([mean, std], dim=-1)


def _run_rnn(rnn, x, lengths):
    """Run a batch-first RNN over padded sequences; returns outputs and the valid-frame mask."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, torch.arange(x.shape[1], device=x.device)[None] < lengths.to(x.device)[:, None]


class EncoderAttention(nn.Module):
    """Frozen Whisper encoder states -> projection -> residual temporal convolution ->
    attentive statistics pooling (weighted mean and std) -> 7 logits. Convolutions and
    pooling instead of a recurrent layer: as accurate here, and several times cheaper
    to train on a CPU."""

    def __init__(self, in_dim=384, proj=128, kernel=5, dropout=0.3, frame_pool=1):
        super().__init__()
        self.frame_pool = frame_pool  # average this many frames first: 25 per second keep the prosody
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, proj), nn.GELU())
        self.conv = nn.Sequential(nn.Conv1d(proj, proj, kernel, padding=kernel // 2), nn.GELU())
        self.pool = AttentionPool(proj)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * proj, len(LABELS)))

    def forward(self, x, lengths):  # x: (batch, frames, 384)
        if self.frame_pool > 1:
            x = nn.functional.avg_pool1d(x.transpose(1, 2), self.frame_pool, ceil_mode=True).transpose(1, 2)
            lengths = (lengths + self.frame_pool - 1) // self.frame_pool
        mask = torch.arange(x.shape[1], device=x.device)[None] < lengths.to(x.device)[:, None]
        x = self.proj(x) * mask.unsqueeze(-1)
        x = x + self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.head(self.pool(x, mask, with_std=True))


class LogMelCRNN(nn.Module):
    """Log-mel -> conv blocks (each halves time and frequency) -> BiLSTM -> attention
    pooling -> 7 logits."""

    def __init__(self, channels=(16, 32, 64), hidden=64, dropout=0.3, n_mels=N_MELS):
        super().__init__()
        blocks, c_in = [], 1
        for c in channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.conv = nn.Sequential(*blocks)
        self.shrink = 2 ** len(channels)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in * (n_mels // self.shrink), 2 * hidden), nn.ReLU())
        self.lstm = nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.pool = AttentionPool(2 * hidden)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, len(LABELS)))

    def forward(self, x, lengths):  # x: (batch, frames, mels)
        x = self.conv(x.transpose(1, 2).unsqueeze(1))  # (batch, channels, mels / shrink, frames / shrink)
        x = self.proj(x.flatten(1, 2).transpose(1, 2))
        out, mask = _run_rnn(self.lstm, x, (lengths // self.shrink).clamp(min=1))
        return self.head(self.pool(out, mask))


# architecture name -> (network class, per-frame features it reads)
NETWORKS = {"whisper-encoder-attn": (EncoderAttention, whisper_states), "logmel-crnn": (LogMelCRNN, log_mel)}


class SequenceClassifier(Model):
    """A network over per-frame features of each speech segment."""

    def __init__(self, net, features):
        self.net, self.features = net.eval(), features

    def predict_proba(self, waves) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for wave in waves:
                x = torch.from_numpy(np.asarray(self.features(wave), dtype=np.float32))[None]
                out.append(self.net(x, torch.tensor([x.shape[1]])).softmax(dim=-1)[0].numpy())
        return np.stack(out) if out else np.zeros((0, len(LABELS)))


def _load_sequence_classifier(entry: ModelEntry) -> SequenceClassifier:
    from safetensors.torch import load_file
    net_class, features = NETWORKS[entry.architecture]
    net = net_class(**entry.config.get("net", {}))
    net.load_state_dict({k: v.float() for k, v in load_file(str(entry.folder / "model.safetensors")).items()})
    return SequenceClassifier(net, features)


for _architecture in NETWORKS:
    register_architecture(_architecture)(_load_sequence_classifier)


def _summary(result: dict) -> dict:
    return {k: result[k] for k in ("label", "probs", "model")}


def analyse_wave(input_, wave: np.ndarray, clf: Model, transcribe: bool = True) -> dict:
    """Timeline, clip-level speech emotion and (optionally) transcript, text emotion and
    fusion for one decoded 16 kHz wave. No speech, or too little, is an InputError."""
    if len(wave) < MIN_SPEECH_SECONDS * SAMPLE_RATE:
        raise InputError(f"{input_}: clip is only {len(wave) / SAMPLE_RATE:.2f} s long; at least "
                         f"{MIN_SPEECH_SECONDS} s of speech is needed to judge an emotion")
    notes = []
    spans = speech_spans(wave)
    if not spans:
        spans = loud_spans(wave)
        if not spans:
            raise InputError(f"{input_}: no speech detected (silence or background noise only)")
        notes.append("the voice detector found no speech, so the loud stretches were classified: "
                     "shouting or screaming can fool it, but check this is a voice")
    segments = speech_segments(spans)
    if not segments:
        total = sum(e - s for s, e in spans)
        raise InputError(f"{input_}: only {total:.2f} s of speech detected; at least {MIN_SPEECH_SECONDS} s "
                         "is needed to judge an emotion")
    pieces = [wave[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in segments]
    seg_probs = clf.predict_proba(pieces)
    clip = np.average(seg_probs, axis=0, weights=[e - s for s, e in segments])
    result = make_result(input_, clip, clf.entry.ref, duration=round(len(wave) / SAMPLE_RATE, 2))
    result["segments"] = [{"start": round(s, 2), "end": round(e, 2), **label_probs(p)}
                          for (s, e), p in zip(segments, seg_probs)]
    result["modalities"] = {"audio": _summary(result)}
    if notes:
        result["notes"] = notes
    if transcribe:
        _add_transcript(result, wave[int(segments[0][0] * SAMPLE_RATE):int(segments[-1][1] * SAMPLE_RATE)], clf)
    return result


def _add_transcript(result: dict, speech: np.ndarray, clf: Model) -> None:
    """Transcript, its text emotion, and the late fusion of audio and text, each weighted
    by its model's validation weighted F1."""
    from .fusion import late_fusion
    from .transcribe import transcribe
    text = transcribe(speech)
    result["transcript"] = text
    probs = {"audio": result["probs"]}
    weights = {"audio": clf.entry.validation_f1}
    if text:
        text_result = classify("text", [text])[0]
        if "error" in text_result:
            result.setdefault("notes", []).append(f"text emotion unavailable: {text_result['error']}")
        else:
            result["modalities"]["text"] = _summary(text_result)
            probs["text"] = text_result["probs"]
            weights["text"] = resolve("text", text_result["model"]).entry.validation_f1
    result["fused"] = late_fusion(probs, weights)


def predict(paths: list, model: str | None = None, transcribe: bool = True, **_) -> list[dict]:
    """Classify audio (or video) files; a file that fails becomes an error result and the
    rest go on. ``transcribe=False`` skips Whisper decoding, text emotion and fusion."""
    clf = resolve("audio", model)
    results = []
    for path in paths:
        try:
            results.append(analyse_wave(path, load_audio(path), clf, transcribe=transcribe))
        except InputError as exc:
            results.append(error_result(path, exc))
    return results
