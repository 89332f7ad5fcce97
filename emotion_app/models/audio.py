"""Speech emotion networks: a head over frozen Whisper tiny.en encoder states, and a
log-mel CRNN trained from scratch. Each reads one speech segment's per-frame features."""
from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..core.labels import LABELS
from ..media.audio import SAMPLE_RATE
from ..media.whisper_layers import DEFAULT_ENCODER
from .base import Model, ModelEntry, load_weights
from .registry import register_architecture

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
    from ..media.transcribe import whisper_encode
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

    def forward(self, x, lengths):
        return self.head(self.forward_features(x, lengths))

    def forward_features(self, x, lengths):  # x: (batch, frames, 384) -> pooled (batch, 2 * proj)
        if self.frame_pool > 1:
            x = nn.functional.avg_pool1d(x.transpose(1, 2), self.frame_pool, ceil_mode=True).transpose(1, 2)
            lengths = (lengths + self.frame_pool - 1) // self.frame_pool
        mask = torch.arange(x.shape[1], device=x.device)[None] < lengths.to(x.device)[:, None]
        x = self.proj(x) * mask.unsqueeze(-1)
        x = x + self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.pool(x, mask, with_std=True)


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

    def forward(self, x, lengths):
        return self.head(self.forward_features(x, lengths))

    def forward_features(self, x, lengths):  # x: (batch, frames, mels) -> pooled (batch, 2 * hidden)
        x = self.conv(x.transpose(1, 2).unsqueeze(1))  # (batch, channels, mels / shrink, frames / shrink)
        x = self.proj(x.flatten(1, 2).transpose(1, 2))
        out, mask = _run_rnn(self.lstm, x, (lengths // self.shrink).clamp(min=1))
        return self.pool(out, mask)


# architecture name -> (network class, per-frame features it reads)
NETWORKS = {"whisper-encoder-attn": (EncoderAttention, whisper_states), "logmel-crnn": (LogMelCRNN, log_mel)}


class SequenceClassifier(Model):
    """A network over per-frame features of each speech segment."""

    def __init__(self, net, features):
        self.net, self.features = net.eval(), features

    @property
    def embedding_dim(self) -> int:
        return self.net.head[-1].in_features

    def _run(self, waves, head: bool) -> np.ndarray:
        """Each wave on its own (no padding), as probabilities or pooled pre-logits."""
        out = []
        with torch.inference_mode():
            for wave in waves:
                x = torch.from_numpy(np.asarray(self.features(wave), dtype=np.float32))[None]
                y = self.net.forward_features(x, torch.tensor([x.shape[1]]))
                out.append((self.net.head(y).softmax(dim=-1) if head else y)[0].numpy())
        return np.stack(out) if out else np.zeros((0, len(LABELS) if head else self.embedding_dim), np.float32)

    def predict_proba(self, waves) -> np.ndarray:
        return self._run(waves, head=True)

    def embed(self, waves) -> np.ndarray:
        return self._run(waves, head=False)


def _load_sequence_classifier(entry: ModelEntry) -> SequenceClassifier:
    from safetensors.torch import load_file
    net_class, features = NETWORKS[entry.architecture]
    net = net_class(**entry.config.get("net", {}))
    load_weights(net, load_file(str(entry.folder / "model.safetensors")))
    return SequenceClassifier(net, features)


for _architecture in NETWORKS:
    register_architecture(_architecture)(_load_sequence_classifier)


# --- every Whisper layer, pooled, for speech from anywhere -------------------------------------

class LayerStatsHead(nn.Module):
    """Each Whisper layer's mean and std over the clip (5 x 768), mixed by learned softmax
    weights, then an MLP: ``forward_features`` is the 256-d pre-logits embedding."""

    def __init__(self, layers: int = 5, dim: int = 768, hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(layers))
        self.body = nn.Sequential(nn.Dropout(0.1), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, len(LABELS))

    @property
    def embedding_dim(self) -> int:
        return self.out.in_features

    def forward_features(self, x):  # x: (batch, layers, 768)
        return self.body((self.layer_logits.softmax(0)[None, :, None] * x).sum(1))

    def forward(self, x):
        return self.out(self.forward_features(x))


class SeedAveragedHeads(nn.Module):
    """Several ``LayerStatsHead`` trained alike from different seeds, their probabilities
    averaged: on corpora none of them heard, five such heads score higher than any one
    (leave-one-corpus-out UAR 0.534 against 0.525 for one, on average), five costing 2.4 ms
    a clip. The output is the log of the mean probability, so calibration and fine-tuning
    read it as the logits of one head; the embedding is the members' pre-logits side by side."""

    def __init__(self, members: int, **head_args):
        super().__init__()
        self.members = nn.ModuleList(LayerStatsHead(**head_args) for _ in range(members))

    @property
    def embedding_dim(self) -> int:
        return sum(member.embedding_dim for member in self.members)

    def forward_features(self, x):
        return torch.cat([member.forward_features(x) for member in self.members], dim=-1)

    def forward(self, x):
        log_probs = torch.stack([member(x).log_softmax(-1) for member in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def layer_stats(waves, encoder: str = DEFAULT_ENCODER) -> np.ndarray:
    """(len(waves), layers, 2 * width) float32: each wave's Whisper layer statistics from
    ``encoder`` (tiny.en: 5 x 768)."""
    from ..media.whisper_layers import layer_stats as one
    return np.stack([one(w, encoder) for w in waves]).astype(np.float32)


# How a clip's layer statistics are standardised among themselves (config "within_clip"):
# "layer": each layer's 768 numbers together (v1-v3); "halves": its 384 means and its 384
# spreads apart, so the spreads' scale does not set the means' (leave-one-corpus-out UAR
# 0.534 -> 0.542, training/speech_wild.py).
WITHIN_CLIP = ("layer", "halves")


def standardise_within_clip(x: np.ndarray, within_clip: str) -> np.ndarray:
    """Layer statistics (..., layers, 2 * width: means then spreads) standardised within the
    clip, so a voice's loudness and timbre count less."""
    if within_clip not in WITHIN_CLIP:
        raise ValueError(f"within_clip must be one of {WITHIN_CLIP}, got {within_clip!r}")
    parts = np.split(x, 2, axis=-1) if within_clip == "halves" else [x]
    return np.concatenate([(p - p.mean(-1, keepdims=True)) / (p.std(-1, keepdims=True) + 1e-5) for p in parts], axis=-1)


def wave_key(wave: np.ndarray) -> bytes:
    """A wave's identity by content: the same samples cut again give the same key."""
    return hashlib.blake2b(np.ascontiguousarray(wave, np.float32).tobytes(), digest_size=16).digest()


class LayerStatsClassifier(Model):
    """Whisper layer statistics of each speech segment, normalised within the clip (per
    layer, so a voice's loudness and timbre count less) and then by the training set's
    statistics, read by ``LayerStatsHead``. Needs nothing from other clips of the speaker.

    A model may also carry a speaker head (config ``speaker_head``): trained on statistics
    standardised by each speaker's own clips, it scores far higher on corpora it never
    heard when a speaker's clips span several emotions, and far lower when they do not
    (its card has both); ``for_speaker`` binds it to one speaker's segments."""

    def __init__(self, head: LayerStatsHead | SeedAveragedHeads, mean: np.ndarray, std: np.ndarray,
                 speaker_head: LayerStatsHead | SeedAveragedHeads | None = None, within_clip: str = "layer",
                 encoder: str = DEFAULT_ENCODER):
        self.head, self.mean, self.std, self.within_clip = head.eval(), mean, std, within_clip
        self.encoder = encoder
        self.speaker_head = speaker_head.eval() if speaker_head is not None else None

    @property
    def embedding_dim(self) -> int:
        return self.head.embedding_dim

    def for_speaker(self, profile: SpeakerStats) -> SpeakerNormalised:
        """The speaker head bound to one speaker, from the statistics of their speech segments."""
        if self.speaker_head is None:
            raise ValueError(f"{self.entry.ref} has no speaker head")
        return SpeakerNormalised(self, profile)

    def features(self, waves) -> torch.Tensor:
        return self.standardise(layer_stats(waves, self.encoder))

    def standardise(self, x: np.ndarray) -> torch.Tensor:
        """Layer statistics as the single-clip heads read them: within the clip, then by the training set."""
        x = standardise_within_clip(x, self.within_clip)
        return torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))

    def predict_proba(self, waves) -> np.ndarray:
        if not len(waves):
            return np.zeros((0, len(LABELS)), np.float32)
        with torch.inference_mode():
            return self.head(self.features(waves)).softmax(-1).numpy()

    def embed(self, waves) -> np.ndarray:
        if not len(waves):
            return np.zeros((0, self.embedding_dim), np.float32)
        with torch.inference_mode():
            return self.head.forward_features(self.features(waves)).numpy()


MAX_KNOWN_SEGMENTS = 4096  # statistics kept per speaker for reuse: 4096 x 15 KB = 63 MB at most


class SpeakerStats:
    """One speaker's segment statistics as they are read: their running mean and spread
    (what the speaker head is standardised by) and, for the first MAX_KNOWN_SEGMENTS
    segments, the statistics themselves by ``wave_key``, so Whisper need not run on them
    again; memory stays bounded whatever the number of clips."""

    def __init__(self):
        self.count, self.total, self.squares, self.known = 0, 0.0, 0.0, {}

    def add_waves(self, waves) -> None:
        if len(waves):
            self.add({wave_key(w): s for w, s in zip(waves, layer_stats(waves))})

    def add(self, keyed: dict[bytes, np.ndarray]) -> None:
        for key, stats in keyed.items():
            self.count += 1
            self.total = self.total + stats.astype(np.float64)
            self.squares = self.squares + stats.astype(np.float64) ** 2
            if len(self.known) < MAX_KNOWN_SEGMENTS:
                self.known[key] = stats

    @property
    def mean(self) -> np.ndarray:
        return (self.total / self.count).astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.squares / self.count - (self.total / self.count) ** 2, 0)).astype(np.float32)

    def stats(self, waves) -> np.ndarray:
        return np.stack([self.known[key] if key in self.known else layer_stats([w])[0]
                         for w, key in ((w, wave_key(w)) for w in waves)])


class SpeakerNormalised(Model):
    """A model's speaker head bound to one speaker: each segment standardised by the mean
    and spread of that speaker's segments (``SpeakerStats``). Its probabilities are
    multiplied with the single-clip heads' (and renormalised): on speakers heard in one or
    two moods that product falls far less than the speaker head alone (the card's
    robustness table), and it is calibrated as a whole."""

    def __init__(self, model: LayerStatsClassifier, profile: SpeakerStats):
        self.model, self.entry, self.profile = model, model.entry, profile
        self.mean, self.std = profile.mean, profile.std + 1e-5

    @property
    def calibration(self) -> dict:
        """The speaker head's own calibration (of its product with the single-clip heads)."""
        return self.entry.config["speaker_head"]["calibration"]

    def predict_proba(self, waves) -> np.ndarray:
        if not len(waves):
            return np.zeros((0, len(LABELS)), np.float32)
        x = self.profile.stats(waves)
        with torch.inference_mode():
            speaker = self.model.speaker_head(torch.from_numpy(((x - self.mean) / self.std).astype(np.float32)))
            single = self.model.head(self.model.standardise(x))
            return (speaker.log_softmax(-1) + single.log_softmax(-1)).softmax(-1).numpy()


def _heads(net: dict, tensors: dict) -> LayerStatsHead | SeedAveragedHeads:
    net = dict(net)
    members = net.pop("members", None)
    head = SeedAveragedHeads(members, **net) if members else LayerStatsHead(**net)
    load_weights(head, tensors)
    return head


@register_architecture("whisper-layers-mlp")
def _load_layer_stats(entry: ModelEntry) -> LayerStatsClassifier:
    from safetensors.torch import load_file
    tensors = load_file(str(entry.folder / "model.safetensors"))
    head = _heads(entry.config.get("net", {}), {k: v for k, v in tensors.items() if not k.startswith(("norm.", "speaker."))})
    speaker = entry.config.get("speaker_head")
    speaker_head = _heads(speaker["net"], {k[len("speaker."):]: v for k, v in tensors.items()
                                           if k.startswith("speaker.")}) if speaker else None
    return LayerStatsClassifier(head, tensors["norm.mean"].float().numpy(), tensors["norm.std"].float().numpy(),
                                speaker_head, entry.config.get("within_clip", "layer"),
                                entry.config.get("encoder", DEFAULT_ENCODER))
