"""Fused selective scan (mamba-ssm's selective_scan_fn, real A, channels-last) on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal on macOS). The backward
recomputes states from checkpoints, so memory stays O(batch*time*channels), never times state.
"""

from __future__ import annotations

from dfnet4 import _extension
from dfnet4.ops._checks import Checks, cast, compute_dtype

check = Checks("selective_scan")


def _validate(u, delta, A, B, C, D, z, delta_bias, h0, max_state):
    check.array("u", u, 3, "(batch, time, channels)")
    check.array("A", A, 2, "(channels, state)")
    batch, length, channels = u.shape
    state = A.shape[1]
    check.nonempty("u", u, "batch, time and channels")
    check.at_most("A", A, state, max_state, "states (A.shape[1])")
    check.array("delta", delta, 3, "(batch, time, channels)")
    check.shape("delta", delta, u.shape, "(batch, time, channels) like u")
    check.shape("A", A, (channels, state), f"(channels, state) with u's channels ({channels})")
    for name, x in (("B", B), ("C", C)):
        check.array(name, x, 3, "(batch, time, state)")
        check.shape(name, x, (batch, length, state), "(batch, time, state) with A's state")
    check.optional("D", D, (channels,), "(channels,)")
    check.optional("z", z, tuple(u.shape), "(batch, time, channels) like u")
    check.optional("delta_bias", delta_bias, (channels,), "(channels,)")
    check.optional("h0", h0, (batch, channels, state), "(batch, channels, state)")


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, h0=None,
                   return_last_state=False, *, stream=None):
    """Fused selective scan.

    u, delta, z: (batch, time, channels); A: (channels, state); B, C: (batch, time, state);
    D, delta_bias: (channels,); h0: (batch, channels, state) initial state (zeros if None).

        dt  = softplus(delta + delta_bias) (softplus only if delta_softplus)
        h_t = exp(dt * A) * h_{t-1} + dt * B_t * u_t;  y_t = C_t . h_t + D * u_t;  out = y * silu(z)

    Returns out (batch, time, channels) in u's dtype, or (out, last_state) with
    return_last_state (last_state: (batch, channels, state)). Computes in float32 (float64 when
    any input is float64, CPU only); float16/bfloat16 inputs are accepted. state: 1 to 64
    (the extension's SELECTIVE_SCAN_MAX_STATE). Differentiable (mx.grad/mx.vjp) for every array
    argument; mx.compile (also shapeless) works; jvp and vmap raise. Bad shapes or dtypes raise
    ValueError when the graph is built.
    """
    ext = _extension.load()
    _validate(u, delta, A, B, C, D, z, delta_bias, h0, ext.SELECTIVE_SCAN_MAX_STATE)
    arrays = cast(compute_dtype(u, delta, A, B, C, D, z, delta_bias, h0), u, delta, A, B, C, D, z, delta_bias, h0)
    out, last = ext.selective_scan(*arrays[:8], bool(delta_softplus), arrays[8], stream=stream)
    out = out.astype(u.dtype)
    if return_last_state:
        return out, last.astype(u.dtype)
    return out
