"""Depthwise 1-D convolution along the frequency axis of channels-last arrays, and its transpose,
on the extension (DeepFilterNet3's separable (1, K) convs and depthwise (1, K) transposed convs).

The forward and the backward are C++ MLX primitives (CPU threads; Metal kernels written and
emulated). Each output value is a K-tap sum read straight from the input, so a separable conv
block costs this pass plus its pointwise GEMM, instead of a GEMM over gathered K x C patches
(three times the FLOPs, and a patch array three times the input).
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4 import _extension
from dfnet4.ops._checks import check_float_array, describe

MAX_WIDTH = 8  # dfk::kDwMaxWidth; checked again in C++


def _int(name, v, lo, hi=None):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v >= hi):
        want = f">= {lo}" if hi is None else f"in [{lo}, {hi})"
        raise ValueError(f"depthwise_conv: {name} must be an integer {want}, got {v!r}")


def output_size(freqs: int, width: int, stride: int = 1, padding: int | None = None, transposed: bool = False,
                output_padding: int = 0) -> int:
    """Frequencies out for `freqs` in (PyTorch's Conv / ConvTranspose arithmetic)."""
    pad = width // 2 if padding is None else padding
    if transposed:
        return (freqs - 1) * stride - 2 * pad + width + output_padding
    return (freqs + 2 * pad - width) // stride + 1


def depthwise_conv(x, weight, stride=1, padding=None, transposed=False, output_padding=0, *, stream=None):
    """Per-channel K-tap convolution along axis -2 (frequency) of x (..., F, C), weight (K, C).

    padding defaults to K // 2 (zeros on both sides). With transposed=False (a strided conv):

        y[..., m, c] = sum_j weight[j, c] * x[..., stride * m + j - padding, c]

    with F' = (F + 2 padding - K) // stride + 1 outputs. With transposed=True, its adjoint (PyTorch's
    ConvTranspose indexing): y[..., f, c] = sum of weight[j, c] * x[..., m, c] over f = stride * m +
    j - padding, F' = (F - 1) stride - 2 padding + K + output_padding. Computes in float32 (float64
    when an input is float64, CPU only); y has x's dtype. Differentiable w.r.t. x and weight;
    mx.compile (also shapeless) works; jvp and vmap raise. Bad arguments raise ValueError.
    """
    check_float_array("depthwise_conv", "weight", weight, 2, "(K, channels)")
    if not isinstance(x, mx.array) or x.ndim < 2:
        check_float_array("depthwise_conv", "x", x, max(2, getattr(x, "ndim", 2)), "(..., freqs, channels)")
        raise ValueError(f"depthwise_conv: x must have shape (..., freqs, channels), got {describe(x)}")
    check_float_array("depthwise_conv", "x", x, x.ndim, "(..., freqs, channels)")
    k, c = weight.shape
    if x.shape[-1] != c:
        raise ValueError(f"depthwise_conv: weight must have shape (K, channels) with x's channels ({x.shape[-1]}), "
                         f"got {describe(weight)}")
    if not 1 <= k <= MAX_WIDTH:
        raise ValueError(f"depthwise_conv: weight must have 1 to {MAX_WIDTH} taps (weight.shape[0] = K), "
                         f"got {describe(weight)}")
    _int("stride", stride, 1)
    pad = k // 2 if padding is None else padding
    _int("padding", pad, 0, k)
    if transposed:
        _int("output_padding", output_padding, 0, stride)
    elif output_padding != 0:
        raise ValueError("depthwise_conv: output_padding is for transposed convolutions only")
    ext = _extension.load()
    ct = mx.float64 if mx.float64 in (x.dtype, weight.dtype) else mx.float32
    y = ext.depthwise_conv(x.astype(ct), weight.astype(ct), stride, pad, bool(transposed), output_padding,
                           stream=stream)
    return y.astype(x.dtype)
