"""On-the-fly noisy/clean mixing as DeepFilterNet does it, as a pure function of (seed, split, epoch, index).

Because every sample is computed from its own RNG seeded with (seed, split, epoch, index), the data a
resumed run sees is exactly the data an uninterrupted run would have seen, and ranks of a
distributed run can draw disjoint indices without talking to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfnet4.data.cache import AudioCache, CacheError
from dfnet4.schema import param
from dfnet4.schema import validate as validate_fields

SPLITS = {"train": 0, "valid": 1}
MIN_SEGMENT_SECONDS = 0.02  # one 960-sample STFT frame at 48 kHz


@dataclass
class MixConfig:
    segment_seconds: float = param(1.0, ge=MIN_SEGMENT_SECONDS)
    snr_db: list[float] = param(default_factory=lambda: [-5.0, 0.0, 5.0, 10.0, 20.0, 40.0])
    speech_gain_db: list[float] = param(default_factory=lambda: [-6.0, 0.0, 6.0])
    max_noises: int = param(2, ge=1)  # each sample mixes 1..max_noises noise clips
    p_reverb: float = param(0.2, ge=0, le=1)  # used only when the cache has RIRs
    early_reflection_ms: float = param(50.0, gt=0)  # reverberant speech target keeps the first 50 ms of the RIR
    valid_fraction: float = param(0.1, gt=0, lt=1)

    def validate(self) -> None:
        validate_fields(self, "data.mix.")


def _split(n: int, fraction: float) -> tuple[range, range]:
    """(train, valid) clip index ranges: the last ceil(fraction*n) clips validate (shared if n == 1)."""
    if n == 1:
        return range(1), range(1)
    k = min(n - 1, max(1, int(np.ceil(fraction * n))))
    return range(n - k), range(n - k, n)


def _crop(rng: np.random.Generator, x: np.ndarray, n: int) -> np.ndarray:
    """A random n-sample window of x; shorter clips are tiled (noise) with a random phase."""
    if x.size >= n:
        start = rng.integers(0, x.size - n + 1)
        return x[start : start + n]
    reps = int(np.ceil(n / x.size)) + 1
    start = rng.integers(0, x.size)
    return np.tile(x, reps)[start : start + n]


def _place(rng: np.random.Generator, x: np.ndarray, n: int) -> np.ndarray:
    """Speech: a random crop when long enough, else the clip at a random offset in silence."""
    if x.size >= n:
        return _crop(rng, x, n)
    out = np.zeros(n, np.float32)
    start = rng.integers(0, n - x.size + 1)
    out[start : start + x.size] = x
    return out


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


class Mixer:
    """`mixer.sample(split, epoch, index) -> (clean, noisy)`, float32 arrays of segment length."""

    def __init__(self, cache: AudioCache, config: MixConfig, seed: int):
        config.validate()
        self.cache, self.config, self.seed = cache, config, int(seed)
        self.sample_rate = cache.sample_rate
        self.length = int(round(config.segment_seconds * self.sample_rate))
        if self.length < 960:
            raise ValueError(f"data.mix.segment_seconds: got {config.segment_seconds}, need at least 960 samples")
        ns, nn_ = cache.num_clips("speech"), cache.num_clips("noise")
        if ns == 0 or nn_ == 0:
            raise CacheError(f"cache {str(cache.directory)!r} needs speech and noise clips, has {ns} and {nn_}")
        self.speech = dict(zip(SPLITS, _split(ns, config.valid_fraction)))
        self.noise = dict(zip(SPLITS, _split(nn_, config.valid_fraction)))
        self.num_rirs = cache.num_clips("rir")

    def _reverb(self, rng: np.random.Generator, speech: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(reverberant speech for the input, early-reflection speech for the target), same energy scale."""
        from scipy.signal import fftconvolve  # here, not at import: scipy.signal costs ~0.8 s to import

        rir = self.cache.clip("rir", int(rng.integers(self.num_rirs))).astype(np.float64)
        rir = rir[int(np.argmax(np.abs(rir))) :]  # align to the direct path so the target is not delayed
        early = rir[: int(self.config.early_reflection_ms * self.sample_rate / 1000)]
        wet = fftconvolve(speech, rir)[: speech.size]
        target = fftconvolve(speech, early)[: speech.size]
        scale = np.sqrt(_power(speech) / max(_power(target), 1e-20))
        return (wet * scale).astype(np.float32), (target * scale).astype(np.float32)

    def sample(self, split: str, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        rng = np.random.default_rng([self.seed, SPLITS[split], int(epoch), int(index)])
        speech_ids, noise_ids = self.speech[split], self.noise[split]
        clean = _place(rng, self.cache.clip("speech", speech_ids[rng.integers(len(speech_ids))]), self.length)
        speech_in = clean
        if self.num_rirs and rng.random() < cfg.p_reverb:
            speech_in, clean = self._reverb(rng, clean)
        noise = np.zeros(self.length, np.float64)
        for _ in range(int(rng.integers(1, cfg.max_noises + 1))):
            clip = _crop(rng, self.cache.clip("noise", noise_ids[rng.integers(len(noise_ids))]), self.length)
            noise += clip / np.sqrt(max(_power(clip), 1e-20)) * 10 ** (rng.uniform(-6, 0) / 20)
        snr = cfg.snr_db[rng.integers(len(cfg.snr_db))]
        p_speech = max(_power(speech_in), 1e-10)  # all-silent speech: mix at the level of -100 dB speech
        noise *= np.sqrt(p_speech / max(_power(noise), 1e-20) / 10 ** (snr / 10))
        gain = 10 ** (cfg.speech_gain_db[rng.integers(len(cfg.speech_gain_db))] / 20)
        noisy = (speech_in + noise) * gain
        clean = clean * gain
        peak = max(np.abs(noisy).max(), np.abs(clean).max())
        if peak > 0.99:  # avoid clipping; keep clean and noisy on the same scale
            noisy, clean = noisy * (0.99 / peak), clean * (0.99 / peak)
        return clean.astype(np.float32), noisy.astype(np.float32)
