"""Fused RMSNorm over the last axis (the math of mx.fast.rms_norm), on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal kernels in Metal builds,
see docs/macos.md). The forward is one pass per row (its sum of squares, then y); the backward one
per row (the sums of x^2 and x * dy * weight, then dx and the row's share of dweight, added into a
per-block partial) and a fold of the partials per channel in a fixed order. Nothing is kept between
them: the backward recomputes each row's scale from x. On the CPU this replaces MLX's fallback
chain of single-threaded elementwise and reduction passes (mx.fast.rms_norm and its vjp) by
threaded, vectorised ones.
"""

from __future__ import annotations

from dfnet4 import _extension
from dfnet4.ops._checks import Checks, cast, compute_dtype

check = Checks("rms_norm")


def _validate(x, weight, eps):
    check.per_channel("weight", weight, check.channels_last(x, 1))
    check.positive("eps", eps)


def rms_norm(x, weight, eps=1e-5, *, stream=None):
    """RMSNorm over the last axis, as mx.fast.rms_norm(x, weight, eps):

        y = x * rsqrt(mean(x * x, axis=-1) + eps) * weight

    x: (..., channels), at least 1-D (every other axis is a row; zero rows give an empty y);
    weight: (channels,). Returns y in x's dtype and shape. Computes in float32 (float64 when any
    input is float64, CPU only). Differentiable (mx.grad / mx.vjp) w.r.t. x and weight;
    mx.compile (also shapeless) works; jvp and vmap raise. Bad arguments raise ValueError when the
    graph is built.
    """
    _validate(x, weight, eps)
    ext = _extension.load()
    arrays = cast(compute_dtype(x, weight), x, weight)
    return ext.rms_norm(*arrays, float(eps), stream=stream).astype(x.dtype)
