"""Real FFTs and (re, im) <-> complex conversions whose backward passes run on float32 views.

MLX's own VJPs of rfft / irfft weight the spectrum's bins with a complex64 mask, and its VJPs of
`real`, `imag` and `a + 1j * b` are complex products too. On the CPU every complex64 product is a
call into libgcc's `__mulsc3` per element (C99's inf/NaN-safe complex multiply), one thread: in the
training step these products cost more than the FFTs themselves. Here the same weights multiply
the spectrum viewed as interleaved float32 (re, im) pairs, and the conversions are views (no copy
at all). The values are MLX's to the bit for finite inputs (a complex times a real weight m + 0j is
re * m and im * m exactly); tests/test_real_fft.py checks every output and gradient against MLX's
autodiff of the plain ops.

All functions work on the last axis, in float32 / complex64 (MLX's FFTs have no wider types).
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx


@lru_cache(maxsize=32)  # a few sizes per model; mx.arrays are immutable
def _bin_weights(bins: int, n: int, edge: float, inner: float) -> mx.array:
    """MLX's FFT-VJP weights for a length-n real signal's `bins` bins, repeated for (re, im): `edge`
    on DC and (n even) Nyquist, which the real FFT uses once, `inner` on the others, used twice."""
    index = mx.arange(bins)
    last = bins - 1 + n % 2
    weights = mx.where((index > 0) & (index < last), inner, edge).astype(mx.float32)
    return mx.repeat(weights, 2)


def _weighted(spectrum: mx.array, weights: mx.array) -> mx.array:
    """spectrum (complex64) * weights (real, per bin and (re, im)), on the float32 view."""
    return mx.view(mx.view(spectrum, mx.float32) * weights, mx.complex64)


@mx.custom_function
def _as_complex(pairs: mx.array) -> mx.array:
    return mx.view(mx.contiguous(pairs), mx.complex64).squeeze(-1)


@_as_complex.vjp
def _as_complex_vjp(pairs, cotangent, output):
    return as_pairs(cotangent)


def as_complex(pairs: mx.array) -> mx.array:
    """(..., 2) real (re, im) pairs -> (...) complex64, differentiable; a view for float32 input."""
    if pairs.ndim < 1 or pairs.shape[-1] != 2:
        raise ValueError(f"as_complex: pairs must have a last axis of 2 (re, im), got shape {tuple(pairs.shape)}")
    return _as_complex(pairs.astype(mx.float32))


@mx.custom_function
def _as_pairs(spectrum: mx.array) -> mx.array:
    return mx.view(mx.contiguous(spectrum), mx.float32).reshape(*spectrum.shape, 2)


@_as_pairs.vjp
def _as_pairs_vjp(spectrum, cotangent, output):
    return as_complex(cotangent)


def as_pairs(spectrum: mx.array) -> mx.array:
    """(...) complex64 -> (..., 2) float32 (re, im) pairs, differentiable; a view."""
    if spectrum.dtype != mx.complex64:
        raise ValueError(f"as_pairs: spectrum must be complex64, got {spectrum.dtype}")
    return _as_pairs(spectrum)


@mx.custom_function
def _rfft(signal: mx.array) -> mx.array:
    return mx.fft.rfft(signal, axis=-1)


@_rfft.vjp
def _rfft_vjp(signal, cotangent, output):  # one argument, one output: arrays, not tuples
    n = signal.shape[-1]
    weighted = _weighted(cotangent, _bin_weights(cotangent.shape[-1], n, 1.0, 0.5))
    return mx.fft.irfft(weighted, n=n, axis=-1) * mx.array(n, mx.float32)


def rfft(signal: mx.array) -> mx.array:
    """mx.fft.rfft over the last axis: (..., n) real -> (..., n // 2 + 1) complex64."""
    if signal.ndim < 1 or signal.shape[-1] < 1:
        raise ValueError(f"rfft: signal must have a non-empty last axis, got shape {tuple(signal.shape)}")
    return _rfft(signal.astype(mx.float32))


@lru_cache(maxsize=32)  # one differentiable irfft per length
def _irfft_of(n: int):
    @mx.custom_function
    def irfft_n(spectrum):
        return mx.fft.irfft(spectrum, n=n, axis=-1)

    @irfft_n.vjp
    def irfft_n_vjp(spectrum, cotangent, output):
        bins = spectrum.shape[-1]
        return _weighted(mx.fft.rfft(cotangent, axis=-1), _bin_weights(bins, n, 1.0 / n, 2.0 / n))

    return irfft_n


def irfft(spectrum: mx.array, n: int) -> mx.array:
    """mx.fft.irfft over the last axis to length n: (..., n // 2 + 1) complex64 -> (..., n) float32."""
    if spectrum.dtype != mx.complex64:
        raise ValueError(f"irfft: spectrum must be complex64, got {spectrum.dtype}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"irfft: n must be a positive int, got {n!r}")
    if spectrum.ndim < 1 or spectrum.shape[-1] != n // 2 + 1:
        raise ValueError(f"irfft: spectrum's last axis must have n // 2 + 1 = {n // 2 + 1} bins, "
                         f"got shape {tuple(spectrum.shape)}")
    return _irfft_of(n)(spectrum)
