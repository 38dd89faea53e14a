"""Pure-MLX RMSNorm: the oracle for dfnet4.ops.rms_norm.

    y = x * rsqrt(mean(x * x, axis=-1) + eps) * weight

The formula as written (in the order of mx.fast.rms_norm's own CPU fallback: (x * r) * weight),
differentiated by MLX's autodiff. Not mx.fast.rms_norm itself: that casts its input to float32
inside, so it cannot be the float64 truth the gradient checks compare with, and its vjp is a
second hand-written backward rather than an independent one. tests/test_rms_norm_op.py checks that
this formula and mx.fast.rms_norm agree in float32. Computed in float32 (float64 when any input is
float64); y has x's dtype.
"""

from __future__ import annotations

import mlx.core as mx


def rms_norm(x, weight, eps=1e-5):
    """Reference RMSNorm; same signature and semantics as `dfnet4.ops.rms_norm`."""
    ct = mx.float64 if mx.float64 in (x.dtype, weight.dtype) else mx.float32
    xc, w = x.astype(ct), weight.astype(ct)
    r = mx.rsqrt(mx.mean(xc * xc, axis=-1, keepdims=True) + eps)
    return ((xc * r) * w).astype(x.dtype)
