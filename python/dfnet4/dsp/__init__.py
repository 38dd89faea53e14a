"""DeepFilterNet's signal processing in MLX: STFT, ERB features, ERB masks, deep filtering.

Everything here reproduces libdf (DeepFilterNet's Rust feature code) numerically and is vectorised
over time: no per-frame Python loops. Spectra are float32 arrays (..., 2) holding (re, im).
"""

from dfnet4.dsp.deep_filter import deep_filter
from dfnet4.dsp.erb import apply_erb_mask, erb_band_index, erb_energy_db, erb_widths
from dfnet4.dsp.features import (
    ERB_NORM_INIT,
    UNIT_NORM_INIT,
    erb_norm,
    erb_norm_init,
    norm_alpha,
    unit_norm,
    unit_norm_init,
)
from dfnet4.dsp.recurrence import exponential_mean
from dfnet4.dsp.stft import FFT_SIZE, HOP_SIZE, SAMPLE_RATE, istft, num_frames, stft, vorbis_window

__all__ = [
    "ERB_NORM_INIT",
    "FFT_SIZE",
    "HOP_SIZE",
    "SAMPLE_RATE",
    "UNIT_NORM_INIT",
    "apply_erb_mask",
    "deep_filter",
    "erb_band_index",
    "erb_energy_db",
    "erb_norm",
    "erb_norm_init",
    "erb_widths",
    "exponential_mean",
    "istft",
    "norm_alpha",
    "num_frames",
    "stft",
    "unit_norm",
    "unit_norm_init",
    "vorbis_window",
]
