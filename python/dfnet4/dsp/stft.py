"""STFT / iSTFT with DeepFilterNet's Vorbis window and normalisation (libdf's analysis/synthesis).

Frame t covers the samples [t*hop - (fft - hop), t*hop + hop) of the signal (zeros before 0), the
way libdf's streaming analysis sees them, so frame t of `stft` equals frame t of libdf's
`DF.analysis`. `stft` emits enough frames to cover every sample by all its windows, so
`istft(stft(x), len(x))` reconstructs x exactly (no delay, no lost tail): the Vorbis window meets
the Princen-Bradley condition w[n]^2 + w[n + hop]^2 = 1 at hop = fft / 2.
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx
import numpy as np

from dfnet4.dsp.real_fft import as_complex, as_pairs, irfft, rfft

SAMPLE_RATE = 48000
FFT_SIZE = 960
HOP_SIZE = 480


@lru_cache(maxsize=8)  # called per frame by the streaming analysis/synthesis; mx.arrays are immutable
def vorbis_window(fft_size: int = FFT_SIZE) -> mx.array:
    """libdf's window sin(pi/2 * sin^2(pi * (n + 0.5) / N)), computed in float64 as libdf does."""
    n = np.arange(fft_size, dtype=np.float64)
    s = np.sin(0.5 * np.pi * (n + 0.5) / (fft_size // 2))
    return mx.array(np.sin(0.5 * np.pi * s * s).astype(np.float32))


def _check_sizes(fft_size: int, hop_size: int) -> None:
    if fft_size != 2 * hop_size:
        # Perfect reconstruction with this window (and libdf's wnorm) holds for 50 % overlap only.
        raise ValueError(f"fft_size must be 2 * hop_size, got fft_size={fft_size}, hop_size={hop_size}")


def num_frames(length: int, fft_size: int = FFT_SIZE, hop_size: int = HOP_SIZE) -> int:
    """Frames `stft` emits for `length` samples: every sample is covered by all its windows."""
    return (length - 1 + fft_size - hop_size) // hop_size + 1 if length > 0 else 0


def stft(audio: mx.array, fft_size: int = FFT_SIZE, hop_size: int = HOP_SIZE) -> mx.array:
    """audio (batch, samples) float32 -> spec (batch, frames, fft_size // 2 + 1, 2)."""
    _check_sizes(fft_size, hop_size)
    if audio.ndim != 2:
        raise ValueError(f"stft: audio must have shape (batch, samples), got {tuple(audio.shape)}")
    if audio.shape[1] < 1:
        raise ValueError("stft: audio must have at least one sample")
    n = audio.shape[1]
    frames = num_frames(n, fft_size, hop_size)
    left = fft_size - hop_size
    total = (frames - 1) * hop_size + fft_size
    padded = mx.pad(audio.astype(mx.float32), [(0, 0), (left, total - left - n)])
    # fft = 2 * hop: frame t is hop-chunk t followed by hop-chunk t + 1.
    return analyse_hops(padded.reshape(audio.shape[0], frames + 1, hop_size))


def analyse_hops(chunks: mx.array) -> mx.array:
    """Consecutive hops (batch, n + 1, hop) -> the n frames over each pair of neighbours
    (batch, n, hop + 1, 2): frame k windows hops k and k + 1. Shared by `stft` and the streaming
    analysis (dsp.streaming), so both give the same numbers."""
    hop_size = chunks.shape[-1]
    fft_size = 2 * hop_size
    wnorm = 2.0 * hop_size / (fft_size * fft_size)  # libdf normalises in the analysis only
    # the scale goes into the (real) window: scaling the complex spectrum costs a complex multiply
    windows = mx.concatenate([chunks[:, :-1], chunks[:, 1:]], axis=-1) * (vorbis_window(fft_size) * wnorm)
    return as_pairs(rfft(windows))


def istft(spec: mx.array, length: int, fft_size: int = FFT_SIZE, hop_size: int = HOP_SIZE) -> mx.array:
    """spec (batch, frames, fft_size // 2 + 1, 2) -> audio (batch, length), inverse of `stft`."""
    _check_sizes(fft_size, hop_size)
    freqs = fft_size // 2 + 1
    if spec.ndim != 4 or spec.shape[2] != freqs or spec.shape[3] != 2:
        raise ValueError(f"istft: spec must have shape (batch, frames, {freqs}, 2), got {tuple(spec.shape)}")
    frames = spec.shape[1]
    left = fft_size - hop_size
    if length < 0 or frames < num_frames(max(length, 1), fft_size, hop_size):
        raise ValueError(
            f"istft: length={length} needs {num_frames(max(length, 1), fft_size, hop_size)} frames, "
            f"spec has {frames}"
        )
    y = synthesise_frames(spec)
    b = spec.shape[0]
    zeros = mx.zeros((b, 1, hop_size), dtype=y.dtype)
    # overlap-add: hop-chunk j = second half of frame j - 1 + first half of frame j
    out = mx.concatenate([y[:, :, :hop_size], zeros], axis=1) + mx.concatenate([zeros, y[:, :, hop_size:]], axis=1)
    out = out.reshape(b, (frames + 1) * hop_size)
    return out[:, left : left + length]


def synthesise_frames(spec: mx.array) -> mx.array:
    """spec (batch, n, freqs, 2) -> the windowed time frames (batch, n, fft_size) to overlap-add
    (libdf's synthesis; shared by `istft` and the streaming synthesis)."""
    fft_size = 2 * (spec.shape[2] - 1)
    # libdf's inverse FFT is unnormalised (x fft_size); irfft divides by fft_size.
    return irfft(as_complex(spec), fft_size) * (fft_size * vorbis_window(fft_size))
