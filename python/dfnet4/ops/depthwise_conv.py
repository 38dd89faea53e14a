"""Depthwise 1-D convolution along the frequency axis of channels-last arrays, and its transpose,
on the extension (DeepFilterNet3's separable (1, K) convs and depthwise (1, K) transposed convs).

The forward and the backward are C++ MLX primitives (CPU threads; Metal kernels in Metal
builds). Each output value is a K-tap sum read straight from the input, so a separable conv
block costs this pass plus its pointwise GEMM, instead of a GEMM over gathered K x C patches
(three times the FLOPs, and a patch array three times the input).
"""

from __future__ import annotations

from dfnet4 import _extension
from dfnet4.ops._checks import Checks, cast, compute_dtype

check = Checks("depthwise_conv")


def max_width() -> int:
    """The widest K the kernels take (the extension's DEPTHWISE_CONV_MAX_WIDTH)."""
    return _extension.load().DEPTHWISE_CONV_MAX_WIDTH


def output_size(freqs: int, width: int, stride: int = 1, padding: int | None = None, transposed: bool = False,
                output_padding: int = 0) -> int:
    """Frequencies out for `freqs` in (PyTorch's Conv / ConvTranspose arithmetic)."""
    pad = width // 2 if padding is None else padding
    if transposed:
        return (freqs - 1) * stride - 2 * pad + width + output_padding
    return (freqs + 2 * pad - width) // stride + 1


def _int(name, v, lo, hi=None):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v >= hi):
        check.fail(f"{name} must be an integer {f'>= {lo}' if hi is None else f'in [{lo}, {hi})'}, got {v!r}")


def _validate(x, weight, stride, padding, transposed, output_padding) -> int:
    """Every argument checked; -> the padding (K // 2 when None)."""
    check.array("x", x, max(getattr(x, "ndim", 2), 2), "(..., freqs, channels)")  # any rank >= 2
    check.array("weight", weight, 2, "(K, channels)")
    k, c = weight.shape
    pad = k // 2 if padding is None else padding
    check.nonempty("x", x, "freqs and channels")
    check.at_most("weight", weight, k, max_width(), "taps (weight.shape[0] = K)")
    check.shape("weight", weight, (k, x.shape[-1]), f"(K, channels) with x's channels ({x.shape[-1]})")
    _int("stride", stride, 1)
    _int("padding", pad, 0, k)
    if transposed:
        _int("output_padding", output_padding, 0, stride)
    elif output_padding != 0:
        check.fail("output_padding is for transposed convolutions only")
    if output_size(x.shape[-2], k, stride, pad, transposed, output_padding) < 1:
        check.fail(f"x's {x.shape[-2]} freqs give no output for K={k}, stride={stride}, padding={pad}")
    return pad


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
    pad = _validate(x, weight, stride, padding, transposed, output_padding)
    ext = _extension.load()
    xc, wc = cast(compute_dtype(x, weight), x, weight)
    y = ext.depthwise_conv(xc, wc, stride, pad, bool(transposed), output_padding, stream=stream)
    return y.astype(x.dtype)
