"""Augmentation: what differs between cameras, microphones, rooms and speakers, not
between emotions."""
from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from ..media.audio import SAMPLE_RATE, resample

MAX_TRAIN_FRAMES = 150  # a speech training window: at most 3 s of Whisper frames, 1.5 s of log-mel


def augment_faces(gray, size: int, gen):
    """uint8 (N, 48, 48) gray faces, or float (N, C, H, W) faces in [0, 1] (colour crops
    as ``models.image.rgb_batch_to_input`` makes them) -> augmented float (N, C, size, size).

    One affine warp per face (rotation +-15 deg, zoom +-15%, shift +-6% of the side,
    mirror) resamples straight to the network's size; then brightness/contrast jitter and
    random erasing of a patch, which makes the nets use the whole face, not one cue."""
    import torch
    import torch.nn.functional as F
    n, dev = len(gray), gray.device

    def uniform(*shape, low=-1.0, high=1.0):
        return torch.rand(*shape, generator=gen, device=dev) * (high - low) + low

    x = gray.float().div(255).unsqueeze(1) if gray.ndim == 3 else gray.float()
    angle, zoom = uniform(n) * math.radians(15), 1 + uniform(n) * 0.15
    mirror = torch.where(uniform(n, low=0, high=1) < 0.5, -1.0, 1.0)
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    shift = uniform(n, 2) * 0.12
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = x.mean((1, 2, 3), keepdim=True)
    contrast, brightness = 1 + uniform(n, 1, 1, 1) * 0.3, uniform(n, 1, 1, 1) * 0.15
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 1)
    area, aspect = uniform(n, low=0.02, high=0.15), torch.exp(uniform(n) * math.log(2))
    h, w = (area * aspect).sqrt() / 2, (area / aspect).sqrt() / 2
    cy, cx = uniform(n, low=0, high=1), uniform(n, low=0, high=1)
    pos = (torch.arange(size, device=dev) + 0.5) / size
    erase = ((pos[None, :, None] - cy[:, None, None]).abs() < h[:, None, None]) & \
            ((pos[None, None, :] - cx[:, None, None]).abs() < w[:, None, None]) & \
            (uniform(n, low=0, high=1) < 0.5)[:, None, None]
    return torch.where(erase[:, None], uniform(n, 1, 1, 1, low=0, high=1), x)


def augment_wave(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Speed (and with it pitch), gain and background noise: what differs between
    speakers, microphones and rooms, not what differs between emotions."""
    speed = rng.integers(90, 111) / 100  # whole percents keep the resampling kernel small
    wave = resample(wave, int(round(SAMPLE_RATE * speed)))  # read back at 16 kHz: faster and higher
    wave = wave * 10 ** (rng.uniform(-6, 6) / 20)
    noise = rng.standard_normal(len(wave)).astype(np.float32)
    if rng.random() < 0.5:  # brown(ish) noise from a leaky integrator: rumble and room tone rather than hiss
        noise = lfilter([1.0], [1.0, -0.995], noise)
    snr_db = rng.uniform(10, 30)
    power = np.mean(wave ** 2) + 1e-10
    noise *= np.sqrt(power / (np.mean(noise ** 2) + 1e-10) / 10 ** (snr_db / 10))
    return np.clip(wave + noise, -1, 1).astype(np.float32)


def random_window(length: int, rng: np.random.Generator, max_frames: int = MAX_TRAIN_FRAMES) -> tuple[int, int]:
    """(start, length) of a random 60-100 % window of a clip's frames, at most
    ``max_frames``: a clip's emotion must show in any good part of it."""
    keep = min(max_frames, max(1, int(length * rng.uniform(0.6, 1.0))))
    return int(rng.integers(0, length - keep + 1)), keep
