"""Synthesised speech-like signals and noises: the built-in training data that needs no download.

Speech: a sequence of voiced segments (a glottal-pulse train with a gliding f0, shaped by four
formant resonators that glide between vowel targets), unvoiced noise bursts (fricative-like, high
band) and pauses, with a syllabic amplitude envelope. Noises: coloured noise (1/f^alpha), babble
(several synthetic talkers summed), and hums/tones over a low noise floor.
"""

from __future__ import annotations

import numpy as np

SR = 48000
_BLOCK = 480  # formants are updated every 10 ms; filter state carries across blocks

# (F1, F2, F3, F4) vowel targets in Hz, roughly /a e i o u/ of an adult voice
_VOWELS = np.array([
    [730, 1090, 2440, 3400], [530, 1840, 2480, 3500], [270, 2290, 3010, 3700],
    [570, 840, 2410, 3300], [300, 870, 2240, 3300],
], dtype=np.float64)
_BANDWIDTHS = np.array([80.0, 110.0, 160.0, 250.0])


def _fade(n: int, sr: int = SR, ms: float = 5.0) -> np.ndarray:
    k = min(n // 2, int(sr * ms / 1000))
    env = np.ones(n)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
        env[:k] = ramp
        env[n - k :] = ramp[::-1]
    return env


def _resonator(freq: float, bw: float, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bw / sr)
    a = np.array([1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r])
    return np.array([a.sum()]), a  # unit gain at DC-normalised peak is not needed; sum(a) keeps scale sane


def _voiced(rng: np.random.Generator, n: int, f0_base: float, sr: int = SR) -> np.ndarray:
    from scipy.signal import lfilter  # here, not at import: scipy.signal costs ~0.8 s to import

    f0 = np.linspace(f0_base * rng.uniform(0.85, 1.2), f0_base * rng.uniform(0.8, 1.15), n)
    f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n)  # slight jitter
    phase = np.cumsum(f0 / sr) % 1.0
    open_q = rng.uniform(0.5, 0.7)
    pulse = np.where(phase < open_q, np.sin(np.pi * phase / open_q) ** 2, 0.0)
    excitation = np.diff(pulse, prepend=0.0)  # glottal flow derivative: rich harmonics, natural tilt
    excitation += 0.02 * rng.standard_normal(n) * pulse  # breathiness
    v0, v1 = _VOWELS[rng.integers(len(_VOWELS), size=2)] * rng.uniform(0.9, 1.15)
    out = np.empty(n)
    states = [np.zeros(2) for _ in range(4)]
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        w = start / max(1, n - 1)
        formants = (1 - w) * v0 + w * v1
        y = excitation[start:stop]
        acc = np.zeros(stop - start)
        for j in range(4):  # parallel formant bank, higher formants weaker
            b, a = _resonator(formants[j], _BANDWIDTHS[j], sr)
            yj, states[j] = lfilter(b, a, y, zi=states[j])
            acc += yj * (0.5 ** j)
        out[start:stop] = acc
    return out


def _unvoiced(rng: np.random.Generator, n: int, sr: int = SR) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    lo, hi = rng.uniform(2000, 4500), rng.uniform(7000, 14000)
    shape = 1.0 / (1 + ((freqs - (lo + hi) / 2) / ((hi - lo) / 2)) ** 4)
    return np.fft.irfft(spec * shape, n) * 0.3


def speech(rng: np.random.Generator, seconds: float, sr: int = SR, f0_base: float | None = None) -> np.ndarray:
    """One speech-like clip, RMS between -32 and -22 dBFS, float32."""
    n = int(seconds * sr)
    out = np.zeros(n)
    f0_base = f0_base if f0_base is not None else rng.uniform(90, 240)
    t = int(rng.uniform(0, 0.2) * sr)
    while t < n:
        kind = rng.choice(3, p=[0.6, 0.2, 0.2])
        dur = int(sr * (rng.uniform(0.08, 0.35), rng.uniform(0.04, 0.15), rng.uniform(0.05, 0.3))[kind])
        dur = min(dur, n - t)
        if dur < 64:
            break
        if kind == 0:
            seg = _voiced(rng, dur, f0_base, sr)
        elif kind == 1:
            seg = _unvoiced(rng, dur, sr)
        else:
            seg = np.zeros(dur)
        if kind != 2:
            seg = seg / (np.sqrt(np.mean(seg**2)) + 1e-9) * rng.uniform(0.3, 1.0)
            seg *= np.sin(np.linspace(0, np.pi, dur)) ** 0.5 * _fade(dur, sr)  # syllable envelope
        out[t : t + dur] += seg
        t += dur
    rms = np.sqrt(np.mean(out**2)) + 1e-9
    return (out / rms * 10 ** (rng.uniform(-32, -22) / 20)).astype(np.float32)


def colored_noise(rng: np.random.Generator, n: int, alpha: float | None = None, sr: int = SR) -> np.ndarray:
    alpha = rng.uniform(0.0, 2.0) if alpha is None else alpha
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec *= 1.0 / np.maximum(freqs, 20.0) ** (alpha / 2)
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def babble(rng: np.random.Generator, n: int, sr: int = SR) -> np.ndarray:
    x = sum(speech(rng, n / sr, sr).astype(np.float64) for _ in range(rng.integers(3, 7)))
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def hum(rng: np.random.Generator, n: int, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    mains = rng.choice([50.0, 60.0])
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 8))
    for _ in range(rng.integers(1, 4)):  # whistles / machine tones with slow vibrato
        f = rng.uniform(300, 6000)
        x = x + rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * f * t + 3 * np.sin(2 * np.pi * rng.uniform(0.1, 2) * t))
    x = x + 0.05 * colored_noise(rng, n, sr=sr)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


NOISE_KINDS = ("colored", "babble", "hum")


def noise(rng: np.random.Generator, seconds: float, kind: str | None = None, sr: int = SR) -> np.ndarray:
    """One noise clip (RMS -25 dBFS, float32); `kind` in NOISE_KINDS or random."""
    n = int(seconds * sr)
    kind = kind or NOISE_KINDS[rng.integers(len(NOISE_KINDS))]
    x = {"colored": colored_noise, "babble": babble, "hum": hum}[kind](rng, n, sr=sr)
    return (x * 10 ** (-25 / 20)).astype(np.float32)
