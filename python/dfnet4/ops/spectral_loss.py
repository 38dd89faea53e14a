"""Fused compressed spectral loss terms (DeepFilterNet's spectral and multi-resolution STFT losses'
core) on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal kernels in Metal
builds). Per complex value they compute |X|^(c-1) and |X|^c from one log and two exps
(branch-free and vectorised on the CPU) for the prediction and the target, and reduce both terms in
the same pass; the backward is one elementwise pass. In pure MLX the same terms were about twenty
single-threaded passes over the spectra, several of them scalar transcendental functions.
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4 import _extension
from dfnet4.ops._checks import FLOATS, Checks, compute_dtype, describe

check = Checks("compressed_spectral_loss")


def _validate(pred, target, gamma):
    for name, a in (("pred", pred), ("target", target)):
        if not isinstance(a, mx.array):
            check.fail(f"{name} must be an mx.array, got {type(a).__name__}")
        if a.dtype != mx.complex64 and a.dtype not in FLOATS:
            check.fail(f"{name} must be complex64 or a floating-point array with (re, im) on a last axis of 2, "
                       f"got {describe(a)}")
        if a.dtype != mx.complex64 and (a.ndim < 1 or a.shape[-1] != 2):
            check.fail(f"{name} must have shape (..., 2) holding (re, im) (or be complex64), got {describe(a)}")
    if (pred.dtype == mx.complex64) != (target.dtype == mx.complex64) or pred.shape != target.shape:
        check.fail(f"target must match pred ({describe(pred)}), got {describe(target)}")
    if (pred.size if pred.dtype == mx.complex64 else pred.size // 2) < 1:
        check.fail(f"pred must hold at least one complex value, got {describe(pred)}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        check.fail(f"gamma must be in (0, 1], got {gamma!r}")


def compressed_spectral_loss(pred, target, gamma=0.3, *, stream=None):
    """(mag, cplx): the mean squared differences of power-law compressed spectra.

    pred, target: complex64 arrays, or real arrays (..., 2) holding (re, im), of one shape. For every
    complex value X, with |X| = sqrt(re^2 + im^2 + 1e-12) and c = gamma:

        mag  = mean (|P|^c - |S|^c)^2
        cplx = mean over values and (re, im) of (P |P|^(c-1) - S |S|^(c-1))^2

    Returns two 0-d arrays: float32 for complex64 inputs, else the inputs' (promoted) dtype; computed
    in float32 (float64 for float64 inputs, CPU only). Differentiable (mx.grad / mx.vjp) w.r.t.
    pred and target; mx.compile (also shapeless) works; jvp and vmap raise. Bad arguments raise
    ValueError when the graph is built.
    """
    _validate(pred, target, gamma)
    ext = _extension.load()
    if pred.dtype == mx.complex64:
        ct, out = mx.complex64, mx.float32
    else:
        ct, out = compute_dtype(pred, target), mx.result_type(pred, target)
    mag, cplx = ext.compressed_spectral_loss(pred.astype(ct), target.astype(ct), float(gamma), stream=stream)
    return mag.astype(out), cplx.astype(out)
