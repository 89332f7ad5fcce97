"""Prosody of a speech segment: pitch, loudness, voice quality and tempo, as 32 numbers.

Whisper tiny.en was trained to transcribe English, so its layers say less about how a
Polish or Amharic speaker sounds than about what an English one says. Pitch level and
movement, loudness and its swings, spectral tilt and speaking rate carry arousal across
languages (the eGeMAPS line of work), so ``training.speech_wild`` can append these to the
Whisper layers (recipe switch ``prosody=true``). Measured, it does not help, so the app does
not compute them: leave-one-corpus-out mean UAR on clean features, 2 seeds, recipe
``weighted+cb+mask+utt,dann=0.3``: 0.502 without, 0.487 with all 32, 0.496 with the 19
dynamics only (spreads, slopes, rates), 0.495 with dynamics and pitch level. The levels a
microphone and room set (loudness, spectral tilt) tell the corpora apart more than the
emotions. Plain numpy, 30-100 ms for a 5 s clip on a loaded core; pitch is the shortest
strong peak of the normalised autocorrelation between 50 and 400 Hz (40 ms frames every
10 ms), within 0.1 semitone on synthetic tones of 60-350 Hz.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
HOP = 160                  # 10 ms
FRAME = 640                # 40 ms: two periods of the lowest pitch looked for
MIN_LAG, MAX_LAG = 40, 320  # 400 Hz .. 50 Hz
VOICING_THRESHOLD = 0.45   # normalised autocorrelation peak above which a frame is voiced
OCTAVE_RATIO = 0.9         # a shorter period within this share of the best peak wins (no octave drops)
SILENCE_DB = 35.0          # frames this far below the loudest 5% are pauses
NAMES = (
    "f0_mean", "f0_std", "f0_p10", "f0_p50", "f0_p90", "f0_range", "f0_delta", "f0_slope",
    "voiced_fraction", "periodicity",
    "loud_mean", "loud_std", "loud_p10", "loud_p90", "loud_range", "loud_delta", "loud_slope",
    "centroid_mean", "centroid_std", "rolloff_mean", "rolloff_std", "flatness_mean", "flatness_std",
    "tilt_mean", "tilt_std", "alpha_mean", "alpha_std", "zcr_mean", "zcr_std",
    "pause_fraction", "syllable_rate", "voiced_run",
)
DIM = len(NAMES)


def _frames(wave: np.ndarray) -> np.ndarray:
    """(n, FRAME) Hann-windowed frames every HOP samples (the wave padded to one frame)."""
    if len(wave) < FRAME:
        wave = np.pad(wave, (0, FRAME - len(wave)))
    n = 1 + (len(wave) - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    return wave[index] * np.hanning(FRAME)[None, :]


def _window_acf() -> np.ndarray:
    """The Hann window's own normalised autocorrelation, which a windowed frame's is divided
    by so that a periodic frame scores near 1 at any pitch (Boersma 1993)."""
    power = np.abs(np.fft.rfft(np.hanning(FRAME), n=2 * FRAME)) ** 2
    acf = np.fft.irfft(power)[: MAX_LAG + 1]
    return acf / acf[0]


def _stats(x: np.ndarray) -> tuple[float, float]:
    return (float(x.mean()), float(x.std())) if len(x) else (0.0, 0.0)


def _slope(x: np.ndarray) -> float:
    """Least-squares slope per second of a frame series (its trend: rising, falling)."""
    if len(x) < 2:
        return 0.0
    t = np.arange(len(x)) * HOP / SAMPLE_RATE
    t = t - t.mean()
    return float((t * (x - x.mean())).sum() / ((t ** 2).sum() + 1e-9))


def prosody(wave: np.ndarray) -> np.ndarray:
    """The NAMES features of a 16 kHz mono float wave, float32 (DIM,). Pitch is in
    semitones and loudness in dB, so a gain or a voice's register shifts them evenly."""
    wave = np.asarray(wave, dtype=np.float64)
    frames = _frames(wave - wave.mean() if len(wave) else np.zeros(FRAME))
    power = np.abs(np.fft.rfft(frames, n=2 * FRAME, axis=1)) ** 2
    acf = np.fft.irfft(power, axis=1)[:, : MAX_LAG + 1]
    periodicity = acf[:, MIN_LAG:] / (acf[:, :1] + 1e-12) / _window_acf()[MIN_LAG:]
    peak = periodicity.max(axis=1)
    # the shortest period whose peak is nearly the best: a voice repeats at 2x, 3x its period too
    inner = periodicity[:, 1:-1]
    summit = (inner > periodicity[:, :-2]) & (inner >= periodicity[:, 2:]) & (inner >= OCTAVE_RATIO * peak[:, None])
    lag = np.where(summit.any(axis=1), MIN_LAG + 1 + summit.argmax(axis=1), MIN_LAG + periodicity.argmax(axis=1))

    spectrum = power[:, : FRAME + 1] + 1e-12
    freqs = np.fft.rfftfreq(2 * FRAME, 1 / SAMPLE_RATE)
    energy = spectrum.sum(axis=1)
    loud = 10 * np.log10(energy / FRAME + 1e-12)
    speech = loud > np.percentile(loud, 95) - SILENCE_DB
    voiced = speech & (peak > VOICING_THRESHOLD)

    f0 = 12 * np.log2(SAMPLE_RATE / lag / 55.0)  # semitones above 55 Hz
    f0v, loud_s = f0[voiced], loud[speech]
    centroid = (spectrum * freqs).sum(axis=1) / energy
    cumulative = np.cumsum(spectrum, axis=1)
    rolloff = freqs[(cumulative < 0.85 * cumulative[:, -1:]).sum(axis=1).clip(max=len(freqs) - 1)]
    flatness = np.exp(np.log(spectrum).mean(axis=1)) / spectrum.mean(axis=1)
    band = (freqs > 50) & (freqs < 5000)
    logf, logs = np.log(freqs[band]), 10 * np.log10(spectrum[:, band])
    tilt = ((logf - logf.mean()) * (logs - logs.mean(axis=1, keepdims=True))).sum(axis=1) / ((logf - logf.mean()) ** 2).sum()
    low = spectrum[:, (freqs > 50) & (freqs <= 1000)].sum(axis=1)
    high = spectrum[:, (freqs > 1000) & (freqs <= 5000)].sum(axis=1)
    alpha = 10 * np.log10(high / low)
    signs = np.signbit(frames)
    zcr = (signs[:, 1:] != signs[:, :-1]).mean(axis=1)

    def speech_stats(x):
        return _stats(x[speech])

    # syllable nuclei: local loudness maxima at least 3 dB above the speech frames' median
    smooth = np.convolve(np.pad(loud, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    floor = np.median(loud_s) + 3 if len(loud_s) else np.inf
    nuclei = (smooth[1:-1] > smooth[:-2]) & (smooth[1:-1] >= smooth[2:]) & speech[1:-1] & (smooth[1:-1] > floor)
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(int), [0]]))))[::2]
    seconds = max(len(wave) / SAMPLE_RATE, 1e-3)
    p10, p50, p90 = np.percentile(f0v, (10, 50, 90)) if len(f0v) else (0.0, 0.0, 0.0)
    l10, l90 = np.percentile(loud_s, (10, 90)) if len(loud_s) else (0.0, 0.0)
    values = (
        *_stats(f0v), p10, p50, p90, p90 - p10,
        float(np.abs(np.diff(f0v)).mean()) if len(f0v) > 1 else 0.0, _slope(f0v),
        float(voiced.mean()), float(peak[voiced].mean()) if voiced.any() else 0.0,
        *_stats(loud_s), l10, l90, l90 - l10,
        float(np.abs(np.diff(loud_s)).mean()) if len(loud_s) > 1 else 0.0, _slope(loud_s),
        *speech_stats(centroid / 1000), *speech_stats(rolloff / 1000), *speech_stats(flatness),
        *speech_stats(tilt), *speech_stats(alpha), *speech_stats(zcr),
        1.0 - float(speech.mean()), float(nuclei.sum()) / seconds,
        float(runs.mean()) * HOP / SAMPLE_RATE if len(runs) else 0.0,
    )
    return np.asarray(values, dtype=np.float32)
