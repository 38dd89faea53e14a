"""Fused training-mode batch normalisation (+ ReLU), channels-last, on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal kernels in Metal builds,
see docs/model.md and docs/macos.md). Each is three passes over x: block sums, a per-channel fold of the
blocks in a fixed order, the elementwise result; the backward recomputes the ReLU's mask from x, so
nothing but the outputs is kept. On the CPU this replaces about fifteen single-threaded MLX passes
per batch norm (forward and backward) by six threaded ones.
"""

from __future__ import annotations

from dfnet4 import _extension
from dfnet4.ops._checks import Checks, cast, compute_dtype, describe

check = Checks("batch_norm")


def _validate(x, weight, bias, eps):
    channels = check.channels_last(x, 2)
    if x.size // channels < 2:
        check.fail(f"training needs more than one value per channel, got x of {describe(x)}")
    check.per_channel("weight", weight, channels)
    check.per_channel("bias", bias, channels)
    check.positive("eps", eps)


def batch_norm(x, weight, bias, eps=1e-5, relu=False, *, stream=None):
    """Training-mode batch norm over every axis but the last, optionally followed by a ReLU.

    x: (..., channels), at least 2-D; weight, bias: (channels,). With mean and var (biased) over all
    other axes:

        y = (x - mean) / sqrt(var + eps) * weight + bias;   y = max(y, 0) if relu

    Returns (y, mean, var) in x's dtype; mean and var (channels,) feed the running statistics.
    Computes in float32 (float64 when any input is float64, CPU only). Differentiable (mx.grad /
    mx.vjp) w.r.t. x, weight and bias, also through mean and var; mx.compile (also shapeless)
    works; jvp and vmap raise. Bad arguments raise ValueError when the graph is built.
    """
    _validate(x, weight, bias, eps)
    ext = _extension.load()
    arrays = cast(compute_dtype(x, weight, bias), x, weight, bias)
    y, mean, var = ext.batch_norm(*arrays, float(eps), bool(relu), stream=stream)
    return y.astype(x.dtype), mean.astype(x.dtype), var.astype(x.dtype)
