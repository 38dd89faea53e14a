"""Fused selective scan (mamba-ssm's selective_scan_fn, real A, channels-last) on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal on macOS). The backward
recomputes states from checkpoints, so memory stays O(batch*time*channels), never times state.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx

from dfnet4 import _extension
from dfnet4.ops._checks import check_float_array, check_shape, describe

_MAX_STATE = 64  # dfk::kScanMaxState; checked again in C++


_check_array = partial(check_float_array, "selective_scan")
_check_shape = partial(check_shape, "selective_scan")


def _validate(u, delta, A, B, C, D, z, delta_bias, h0):
    _check_array("u", u, 3, "(batch, time, channels)")
    _check_array("A", A, 2, "(channels, state)")
    batch, length, channels = u.shape
    state = A.shape[1]
    if min(batch, length, channels) < 1:
        raise ValueError(f"selective_scan: u needs batch, time and channels >= 1, got {describe(u)}")
    if not 1 <= state <= _MAX_STATE:
        raise ValueError(
            f"selective_scan: A must have 1 to {_MAX_STATE} states (A.shape[1]), got {describe(A)}"
        )
    _check_array("delta", delta, 3, "(batch, time, channels)")
    _check_shape("delta", delta, u.shape, "(batch, time, channels) like u")
    _check_shape("A", A, (channels, state), f"(channels, state) with u's channels ({channels})")
    for name, x in (("B", B), ("C", C)):
        _check_array(name, x, 3, "(batch, time, state)")
        _check_shape(name, x, (batch, length, state), "(batch, time, state) with A's state")
    optional = (
        ("D", D, 1, (channels,), "(channels,)"),
        ("z", z, 3, tuple(u.shape), "(batch, time, channels) like u"),
        ("delta_bias", delta_bias, 1, (channels,), "(channels,)"),
        ("h0", h0, 3, (batch, channels, state), "(batch, channels, state)"),
    )
    for name, x, ndim, want, what in optional:
        if x is not None:
            _check_array(name, x, ndim, what)
            _check_shape(name, x, want, what)


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    h0=None,
    return_last_state=False,
    *,
    stream=None,
):
    """Fused selective scan.

    u, delta, z: (batch, time, channels); A: (channels, state); B, C: (batch, time, state);
    D, delta_bias: (channels,); h0: (batch, channels, state) initial state (zeros if None).

        dt  = softplus(delta + delta_bias) (softplus only if delta_softplus)
        h_t = exp(dt * A) * h_{t-1} + dt * B_t * u_t;  y_t = C_t . h_t + D * u_t;  out = y * silu(z)

    Returns out (batch, time, channels) in u's dtype, or (out, last_state) with
    return_last_state (last_state: (batch, channels, state)). Computes in float32 (float64 when
    any input is float64, CPU only); float16/bfloat16 inputs are accepted. Differentiable
    (mx.grad/mx.vjp) for every array argument; mx.compile (also shapeless) works; jvp and vmap
    raise. Bad shapes or dtypes raise ValueError when the graph is built.
    """
    _validate(u, delta, A, B, C, D, z, delta_bias, h0)
    ext = _extension.load()
    arrays = (u, delta, A, B, C, D, z, delta_bias, h0)
    compute = mx.float64 if any(x is not None and x.dtype == mx.float64 for x in arrays) else mx.float32
    cast = lambda x: None if x is None else x.astype(compute)  # noqa: E731
    out, last = ext.selective_scan(
        *map(cast, (u, delta, A, B, C, D, z, delta_bias)),
        bool(delta_softplus),
        cast(h0),
        stream=stream,
    )
    out = out.astype(u.dtype)
    if return_last_state:
        return out, last.astype(u.dtype)
    return out
