"""Fused training-mode batch normalisation (+ ReLU), channels-last, on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal kernels written and
emulated, see docs/model.md). Each is three passes over x: block sums, a per-channel fold of the
blocks in a fixed order, the elementwise result; the backward recomputes the ReLU's mask from x, so
nothing but the outputs is kept. On the CPU this replaces about fifteen single-threaded MLX passes
per batch norm (forward and backward) by six threaded ones.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx

from dfnet4 import _extension
from dfnet4.ops._checks import FLOATS, check_shape, describe

_check_shape = partial(check_shape, "batch_norm")


def _validate(x, weight, bias, eps):
    for name, a in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(a, mx.array):
            raise ValueError(f"batch_norm: {name} must be an mx.array, got {type(a).__name__}")
        if a.dtype not in FLOATS:
            raise ValueError(f"batch_norm: {name} must be a floating-point array, got {describe(a)}")
    if x.ndim < 2 or x.shape[-1] < 1:
        raise ValueError(f"batch_norm: x must have shape (..., channels) with at least 2 dimensions, got {describe(x)}")
    channels = x.shape[-1]
    if x.size // channels < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got x of {describe(x)}")
    _check_shape("weight", weight, (channels,), f"(channels,) with x's channels ({channels})")
    _check_shape("bias", bias, (channels,), f"(channels,) with x's channels ({channels})")
    if not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
        raise ValueError(f"batch_norm: eps must be a finite number > 0, got {eps!r}")


def batch_norm(x, weight, bias, eps=1e-5, relu=False, *, stream=None):
    """Training-mode batch norm over every axis but the last, optionally followed by a ReLU.

    x: (..., channels); weight, bias: (channels,). With mean and var (biased) over all other axes:

        y = (x - mean) / sqrt(var + eps) * weight + bias;   y = max(y, 0) if relu

    Returns (y, mean, var): y in x's dtype, mean and var (channels,) for the running statistics.
    Computes in float32 (float64 when any input is float64, CPU only). Differentiable (mx.grad /
    mx.vjp) w.r.t. x, weight and bias, also through mean and var; mx.compile (also shapeless)
    works; jvp and vmap raise. Bad arguments raise ValueError when the graph is built.
    """
    _validate(x, weight, bias, eps)
    ext = _extension.load()
    ct = mx.float64 if mx.float64 in (x.dtype, weight.dtype, bias.dtype) else mx.float32
    y, mean, var = ext.batch_norm(x.astype(ct), weight.astype(ct), bias.astype(ct), float(eps), bool(relu),
                                  stream=stream)
    return y.astype(x.dtype), mean, var
