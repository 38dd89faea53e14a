"""ERB band layout (libdf's `erb_fb`), band energies and ERB masks."""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx
import numpy as np


def _freq2erb(f: np.float32) -> np.float32:
    return np.float32(9.265) * np.log1p(f / np.float32(24.7 * 9.265), dtype=np.float32)


def _erb2freq(n: np.float32) -> np.float32:
    return np.float32(24.7 * 9.265) * (np.exp(n / np.float32(9.265), dtype=np.float32) - np.float32(1.0))


@lru_cache(maxsize=None)
def erb_widths(sr: int = 48000, fft_size: int = 960, nb_erb: int = 32, min_nb_freqs: int = 2) -> tuple[int, ...]:
    """Frequency bins per ERB band, exactly as libdf's `erb_fb` (in float32 like the Rust code)."""
    freq_width = np.float32(sr) / np.float32(fft_size)
    erb_low = _freq2erb(np.float32(0.0))
    erb_high = _freq2erb(np.float32(sr // 2))
    step = (erb_high - erb_low) / np.float32(nb_erb)
    widths = []
    prev, over = 0, 0
    for i in range(1, nb_erb + 1):
        f = _erb2freq(erb_low + np.float32(i) * step)
        fb = int(np.floor(f / freq_width + np.float32(0.5)))  # Rust f32::round (halves up; f >= 0)
        n = fb - prev - over
        if n < min_nb_freqs:
            over = min_nb_freqs - n
            n = min_nb_freqs
        else:
            over = 0
        widths.append(n)
        prev = fb
    widths[-1] += 1  # fft_size / 2 + 1 bins
    too_large = sum(widths) - (fft_size // 2 + 1)
    if too_large > 0:
        widths[-1] -= too_large
    if sum(widths) != fft_size // 2 + 1 or min(widths) < 1:
        raise ValueError(
            f"erb_widths: nb_erb={nb_erb}, min_nb_freqs={min_nb_freqs} do not fit fft_size={fft_size}"
        )
    return tuple(widths)


def erb_band_index(widths: tuple[int, ...]) -> mx.array:
    """(freqs,) int32: the ERB band each frequency bin belongs to."""
    return mx.array(np.repeat(np.arange(len(widths)), widths).astype(np.int32))


def _band_matrix(widths: tuple[int, ...]) -> mx.array:
    """(freqs, bands) averaging matrix: 1 / width on the band's bins (libdf's compute_band_corr)."""
    m = np.zeros((sum(widths), len(widths)), dtype=np.float32)
    start = 0
    for b, w in enumerate(widths):
        m[start : start + w, b] = 1.0 / w
        start += w
    return mx.array(m)


def erb_energy_db(spec: mx.array, widths: tuple[int, ...]) -> mx.array:
    """Mean power per ERB band in dB: 10 log10(mean |X|^2 + 1e-10). spec (..., F, 2) -> (..., E)."""
    power = mx.sum(spec * spec, axis=-1)
    return 10.0 * mx.log10(power @ _band_matrix(widths) + 1e-10)


def apply_erb_mask(spec: mx.array, mask: mx.array, widths: tuple[int, ...]) -> mx.array:
    """Multiply every bin by its band's gain: spec (..., F, 2), mask (..., E).

    This is libdf's `apply_interp_band_gain`, i.e. the inverse filterbank with ones on each band's
    bins. (A column-normalised inverse would scale wide high-frequency bands' gains by 1/width.)
    """
    if mask.shape[-1] != len(widths) or spec.shape[-2] != sum(widths) or spec.shape[-1] != 2:
        raise ValueError(
            f"apply_erb_mask: need spec (..., {sum(widths)}, 2) and mask (..., {len(widths)}), "
            f"got spec {tuple(spec.shape)}, mask {tuple(mask.shape)}"
        )
    gains = mx.take(mask, erb_band_index(widths), axis=-1)
    return spec * gains[..., None]
