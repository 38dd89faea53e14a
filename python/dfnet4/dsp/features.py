"""DeepFilterNet's input features: normalised ERB energies and unit-normalised complex bins.

Both keep an exponential running state (libdf's `band_mean_norm_erb` and `band_unit_norm`),
initialised as libdf does and returned so that a stream can be continued.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from dfnet4.dsp.recurrence import exponential_mean

ERB_NORM_INIT = (-60.0, -90.0)  # libdf MEAN_NORM_INIT: linspace over the bands
UNIT_NORM_INIT = (0.001, 0.0001)  # libdf UNIT_NORM_INIT: linspace over the df bins


def norm_alpha(sr: int = 48000, hop_size: int = 480, tau: float = 1.0) -> float:
    """Decay of the running norms: exp(-hop / (sr * tau)) rounded as libdf does (0.99 for DFN3)."""
    a = float(np.float32(math.exp(-hop_size / sr / tau)))
    precision, out = 3, 1.0
    while out >= 1.0:
        out = round(a * 10**precision) / 10**precision
        precision += 1
    return float(np.float32(out))


def _linspace(lo: float, hi: float, n: int) -> mx.array:
    step = np.float32(hi - lo) / np.float32(n - 1)
    return mx.array((np.float32(lo) + np.arange(n, dtype=np.float32) * step).astype(np.float32))


def erb_norm_init(nb_erb: int) -> mx.array:
    return _linspace(*ERB_NORM_INIT, nb_erb)


def unit_norm_init(nb_df: int) -> mx.array:
    return _linspace(*UNIT_NORM_INIT, nb_df)


def erb_norm(erb_db: mx.array, alpha: float, state: mx.array | None = None) -> tuple[mx.array, mx.array]:
    """(x - running_mean(x)) / 40 over time. erb_db (B, T, E) -> (features (B, T, E), state (B, E))."""
    if erb_db.ndim != 3:
        raise ValueError(f"erb_norm: erb_db must have shape (batch, frames, bands), got {tuple(erb_db.shape)}")
    if state is None:
        state = erb_norm_init(erb_db.shape[-1])
    mean = exponential_mean(erb_db, alpha, state)
    return (erb_db - mean) / 40.0, mean[:, -1]


def unit_norm(spec: mx.array, alpha: float, state: mx.array | None = None) -> tuple[mx.array, mx.array]:
    """x / sqrt(running_mean(|x|)) over time. spec (B, T, F, 2) -> (features (B, T, F, 2), state (B, F))."""
    if spec.ndim != 4 or spec.shape[-1] != 2:
        raise ValueError(f"unit_norm: spec must have shape (batch, frames, freqs, 2), got {tuple(spec.shape)}")
    if state is None:
        state = unit_norm_init(spec.shape[-2])
    mag = mx.sqrt(mx.sum(spec * spec, axis=-1))
    mean = exponential_mean(mag, alpha, state)
    return spec / mx.sqrt(mean)[..., None], mean[:, -1]
