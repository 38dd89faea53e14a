"""Fused causal depthwise conv1d + SiLU (mamba-ssm's causal_conv1d, channels-last) on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal on macOS). The forward
saves nothing: the backward recomputes the pre-activation from x in the same pass that produces
every gradient, so no (batch, time, channels) temporary exists besides the outputs.
"""

from __future__ import annotations

from dfnet4 import _extension
from dfnet4.ops._checks import Checks, cast, compute_dtype

check = Checks("causal_conv1d")
_ACTIVATIONS = ("silu", None)


def max_width() -> int:
    """The widest K the kernels are compiled for (the extension's CAUSAL_CONV_MAX_WIDTH)."""
    return _extension.load().CAUSAL_CONV_MAX_WIDTH


def _validate(x, weight, bias, window, activation, max_width):
    if activation not in _ACTIVATIONS:
        check.fail(f"activation must be 'silu' or None, got {activation!r}")
    check.array("x", x, 3, "(batch, time, channels)")
    check.array("weight", weight, 2, "(K, channels)")
    batch, time, channels = x.shape
    width = weight.shape[0]
    check.nonempty("x", x, "batch, time and channels")
    check.at_most("weight", weight, width, max_width, "taps (weight.shape[0] = K)")
    check.shape("weight", weight, (width, channels), f"(K, channels) with x's channels ({channels})")
    check.optional("bias", bias, (channels,), "(channels,)")
    check.optional("window", window, (batch, width - 1, channels), "(batch, K-1, channels)")


def causal_conv1d(x, weight, bias=None, window=None, activation="silu", return_window=False, *, stream=None):
    """Causal depthwise conv1d over time, then SiLU.

    x: (batch, time, channels); weight: (K, channels), tap j multiplying the input K-1-j steps back;
    bias: (channels,); window: (batch, K-1, channels), the K-1 inputs before x (zeros if None; pass
    the previous call's new window to continue a stream). With xp = concat([window, x], time):

        y[t] = activation(bias + sum_j weight[j] * xp[t + j])

    activation: "silu" or None. Returns y (batch, time, channels) in x's dtype, or (y, new_window)
    with return_window, new_window = the last K-1 rows of xp (also when time < K-1). Computes in
    float32 (float64 when any input is float64, CPU only); float16/bfloat16 inputs are accepted.
    K from 1 to the extension's CAUSAL_CONV_MAX_WIDTH (8). Differentiable (mx.grad/mx.vjp) for every
    array argument; mx.compile (also shapeless) works; jvp and vmap raise. Bad arguments raise
    ValueError when the graph is built.
    """
    ext = _extension.load()
    _validate(x, weight, bias, window, activation, max_width())
    arrays = cast(compute_dtype(x, weight, bias, window), x, weight, bias, window)
    y, new_window = ext.causal_conv1d(*arrays, activation == "silu", stream=stream)
    y = y.astype(x.dtype)
    if return_window:
        return y, new_window.astype(x.dtype)
    return y
