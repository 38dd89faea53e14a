"""Pure-MLX training-mode batch norm (+ ReLU): the oracle for dfnet4.ops.batch_norm.

    mean, var = mean and biased variance over every axis but the last
    y = (x - mean) * rsqrt(var + eps) * weight + bias;   y = max(y, 0) if relu

The formula as written, differentiated by MLX's autodiff (also through mean and var). Computed in
float32 (float64 when any input is float64); y has x's dtype.
"""

from __future__ import annotations

import mlx.core as mx


def batch_norm(x, weight, bias, eps=1e-5, relu=False):
    """Reference batch norm; same signature and semantics as `dfnet4.ops.batch_norm`."""
    ct = mx.float64 if mx.float64 in (x.dtype, weight.dtype, bias.dtype) else mx.float32
    xc, w, b = x.astype(ct), weight.astype(ct), bias.astype(ct)
    axes = tuple(range(x.ndim - 1))
    mean = mx.mean(xc, axis=axes)
    var = mx.var(xc, axis=axes)
    y = (xc - mean) * mx.rsqrt(var + eps) * w + b
    if relu:
        y = mx.maximum(y, 0)
    return y.astype(x.dtype), mean, var
