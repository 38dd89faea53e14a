"""Short synthetic speech-like signals for tests (no audio files needed).

A voiced source with a moving pitch, shaped by three moving formant resonances, syllable-rate
amplitude modulation and fricative noise bursts: enough spectral and temporal structure to
exercise the features and the enhancement model like speech would.
"""

from __future__ import annotations

import numpy as np


def speech_like(seconds: float = 1.0, sr: int = 48000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 140.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 15.0 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = [
        (600 + 250 * np.sin(2 * np.pi * 2.3 * t), 90.0),
        (1500 + 500 * np.sin(2 * np.pi * 1.7 * t + 1.0), 120.0),
        (2600 + 300 * np.sin(2 * np.pi * 1.1 * t + 2.0), 180.0),
    ]
    voiced = np.zeros(n)
    for k in range(1, int(8000 / 100)):
        fk = k * f0
        amp = sum(1.0 / (1.0 + ((fk - fc) / bw) ** 2) for fc, bw in formants) * (fk < 8000) / np.sqrt(k)
        voiced += amp * np.sin(k * phase)
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0.0, None) ** 0.7
    fric = np.diff(rng.standard_normal(n + 1)) * (np.sin(2 * np.pi * 1.3 * t) > 0.8)
    x = voiced * syllables + 0.05 * fric
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def noise(seconds: float = 1.0, sr: int = 48000, seed: int = 1) -> np.ndarray:
    """Pinkish (1/f-tilted) noise, unit RMS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.arange(spec.size), 1.0) / 50.0) ** 0.5
    x = np.fft.irfft(spec, n)
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def mixture(seconds: float = 1.0, snr_db: float = 5.0, sr: int = 48000, seed: int = 0) -> np.ndarray:
    s = speech_like(seconds, sr, seed)
    v = noise(seconds, sr, seed + 1)
    gain = np.sqrt(np.mean(s**2)) / 10 ** (snr_db / 20)
    return (s + gain * v).astype(np.float32)


def babble(seconds: float = 1.0, talkers: int = 5, sr: int = 48000, seed: int = 10) -> np.ndarray:
    """Several speech-like talkers at once (each shifted in time), unit RMS."""
    n = int(seconds * sr)
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for k in range(talkers):
        s = speech_like(seconds + 1.0, sr, seed + 1 + k)
        start = int(rng.integers(0, sr))
        x += s[start : start + n] * rng.uniform(0.6, 1.0)
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def mix(speech: np.ndarray, noise_: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled to `snr_db` (both the same length)."""
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise_**2)) / 10 ** (snr_db / 20)
    return (speech + gain * noise_).astype(np.float32)
