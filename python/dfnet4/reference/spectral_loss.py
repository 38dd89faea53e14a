"""Pure-MLX compressed spectral loss terms: the oracle for dfnet4.ops.compressed_spectral_loss.

    |X| = sqrt(re^2 + im^2 + 1e-12);  mag = mean (|P|^c - |S|^c)^2
    cplx = mean over values and (re, im) of (P |P|^(c-1) - S |S|^(c-1))^2

The formula as written, differentiated by MLX's autodiff (what dfnet4.train.losses computed before
the fused op). Complex64 inputs or real (..., 2) inputs holding (re, im).
"""

from __future__ import annotations

import mlx.core as mx

_EPS = 1e-12


def _parts(a):
    if a.dtype == mx.complex64:
        return mx.real(a), mx.imag(a)
    ct = mx.float64 if a.dtype == mx.float64 else mx.float32
    return a[..., 0].astype(ct), a[..., 1].astype(ct)


def compressed_spectral_loss(pred, target, gamma=0.3):
    """Reference terms; same signature and semantics as `dfnet4.ops.compressed_spectral_loss`."""
    (pr, pi), (tr, ti) = _parts(pred), _parts(target)
    pm, tm = mx.sqrt(pr * pr + pi * pi + _EPS), mx.sqrt(tr * tr + ti * ti + _EPS)
    pc, tc = pm**gamma, tm**gamma
    mag = mx.mean(mx.square(pc - tc))
    ps, ts = pc / pm, tc / tm  # |X|^(c-1): rescales the complex value to the compressed magnitude
    cplx = (mx.mean(mx.square(pr * ps - tr * ts)) + mx.mean(mx.square(pi * ps - ti * ts))) / 2
    return mag, cplx
