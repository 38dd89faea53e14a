"""Fused causal depthwise conv1d + SiLU (mamba-ssm's causal_conv1d, channels-last) on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal on macOS). The forward
saves nothing: the backward recomputes the pre-activation from x in the same pass that produces
every gradient, so no (batch, time, channels) temporary exists besides the outputs.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx

from dfnet4 import _extension
from dfnet4.ops._checks import check_float_array, check_shape, describe

MAX_WIDTH = 8  # dfk::kConvMaxWidth, the widest K with kernels; checked again in C++
_ACTIVATIONS = ("silu", None)


_check_array = partial(check_float_array, "causal_conv1d")
_check_shape = partial(check_shape, "causal_conv1d")


def _validate(x, weight, bias, window, activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"causal_conv1d: activation must be 'silu' or None, got {activation!r}")
    _check_array("x", x, 3, "(batch, time, channels)")
    _check_array("weight", weight, 2, "(K, channels)")
    batch, time, channels = x.shape
    width = weight.shape[0]
    if min(batch, time, channels) < 1:
        raise ValueError(f"causal_conv1d: x needs batch, time and channels >= 1, got {describe(x)}")
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(
            f"causal_conv1d: weight must have 1 to {MAX_WIDTH} taps (weight.shape[0] = K), got {describe(weight)}"
        )
    _check_shape("weight", weight, (width, channels), f"(K, channels) with x's channels ({channels})")
    if bias is not None:
        _check_array("bias", bias, 1, "(channels,)")
        _check_shape("bias", bias, (channels,), "(channels,)")
    if window is not None:
        _check_array("window", window, 3, "(batch, K-1, channels)")
        _check_shape("window", window, (batch, width - 1, channels), "(batch, K-1, channels)")


def _compute_dtype(*arrays):
    """float64 when any given array is float64 (CPU only), else float32 (half types widen)."""
    return mx.float64 if any(a is not None and a.dtype == mx.float64 for a in arrays) else mx.float32


def causal_conv1d(x, weight, bias=None, window=None, activation="silu", return_window=False, *, stream=None):
    """Causal depthwise conv1d over time, then SiLU.

    x: (batch, time, channels); weight: (K, channels), tap j multiplying the input K-1-j steps back;
    bias: (channels,); window: (batch, K-1, channels), the K-1 inputs before x (zeros if None; pass
    the previous call's new window to continue a stream). With xp = concat([window, x], time):

        y[t] = activation(bias + sum_j weight[j] * xp[t + j])

    activation: "silu" or None. Returns y (batch, time, channels) in x's dtype, or (y, new_window)
    with return_window, new_window = the last K-1 rows of xp (also when time < K-1). Computes in
    float32 (float64 when any input is float64, CPU only); float16/bfloat16 inputs are accepted.
    K from 1 to 8. Differentiable (mx.grad/mx.vjp) for every array argument; mx.compile (also
    shapeless) works; jvp and vmap raise. Bad arguments raise ValueError when the graph is built.
    """
    _validate(x, weight, bias, window, activation)
    ext = _extension.load()
    ct = _compute_dtype(x, weight, bias, window)
    cast = lambda a: None if a is None else a.astype(ct)  # noqa: E731
    y, new_window = ext.causal_conv1d(
        cast(x), cast(weight), cast(bias), cast(window), activation == "silu", stream=stream
    )
    y = y.astype(x.dtype)
    if return_window:
        return y, new_window.astype(x.dtype)
    return y
