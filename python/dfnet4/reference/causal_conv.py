"""Pure-MLX causal depthwise conv1d (+ SiLU): the oracle for dfnet4.ops.causal_conv1d.

With xp = concat([window, x], time) (window zeros when None), K = weight.shape[0]:

    y[b,t,c]   = activation(bias[c] + sum_j weight[j,c] * xp[b,t+j,c])
    new_window = xp[:, time:]   (the last K-1 rows)

K shifted slices multiplied and added, as the Mamba block did before the fused op. Computed in
float32 (float64 when any input is float64); outputs have x's dtype. Gradients: MLX's autodiff.
"""

from __future__ import annotations

import mlx.core as mx


def causal_conv1d(x, weight, bias=None, window=None, activation="silu", return_window=False):
    """Reference causal conv; same signature and semantics as `dfnet4.ops.causal_conv1d`."""
    if activation not in ("silu", None):
        raise ValueError(f"causal_conv1d: activation must be 'silu' or None, got {activation!r}")
    arrays = (x, weight, bias, window)
    ct = mx.float64 if any(a is not None and a.dtype == mx.float64 for a in arrays) else mx.float32
    batch, time, channels = x.shape
    k = weight.shape[0]
    if window is None:
        window = mx.zeros((batch, k - 1, channels), dtype=ct)
    xp = mx.concatenate([window.astype(ct), x.astype(ct)], axis=1)  # (batch, K-1+time, channels)
    w = weight.astype(ct)
    y = bias.astype(ct) if bias is not None else mx.zeros((channels,), dtype=ct)
    for j in range(k):
        y = y + xp[:, j : j + time] * w[j]
    if activation == "silu":
        y = y * mx.sigmoid(y)
    y = y.astype(x.dtype)
    if return_window:
        return y, xp[:, time:].astype(x.dtype)
    return y
