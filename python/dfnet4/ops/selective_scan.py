"""Fused selective scan (mamba-ssm's selective_scan_fn, real A, channels-last) on the extension.

The forward and the backward are C++ MLX primitives (CPU threads; Metal on macOS). The backward
recomputes states from checkpoints, so memory stays O(batch*time*channels), never times state.
`selective_scan_checkpointed` and `selective_scan_backward` expose that pair for a caller with a
hand-written backward that keeps the checkpoints (the recomputing Mamba block): the backward also
re-forms the forward's output from the states it recomputes anyway (mamba-ssm's recompute_out_z),
so the caller needs neither the output kept nor a second forward.
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


def _prepared(u, delta, A, B, C, D, z, delta_bias, h0):
    """(extension, arrays cast to the compute dtype) after the checks."""
    ext = _extension.load()
    _validate(u, delta, A, B, C, D, z, delta_bias, h0, ext.SELECTIVE_SCAN_MAX_STATE)
    return ext, cast(compute_dtype(u, delta, A, B, C, D, z, delta_bias, h0), u, delta, A, B, C, D, z, delta_bias, h0)


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
    ext, arrays = _prepared(u, delta, A, B, C, D, z, delta_bias, h0)
    out, last = ext.selective_scan(*arrays[:8], bool(delta_softplus), arrays[8], stream=stream)
    out = out.astype(u.dtype)
    if return_last_state:
        return out, last.astype(u.dtype)
    return out


def selective_scan_checkpointed(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                                h0=None, *, stream=None):
    """selective_scan's forward returning (out, last_state, checkpoints), arguments as selective_scan.

    checkpoints: (batch, ceil(time / SELECTIVE_SCAN_CHUNK), state, channels) in the compute dtype,
    the state entering every chunk of time steps: what selective_scan_backward needs. Meant for a
    hand-written backward; differentiating through it works as for selective_scan.
    """
    ext, arrays = _prepared(u, delta, A, B, C, D, z, delta_bias, h0)
    out, last, checkpoints = ext.selective_scan_checkpointed(*arrays[:8], bool(delta_softplus), arrays[8],
                                                             stream=stream)
    return out.astype(u.dtype), last.astype(u.dtype), checkpoints


# the backward primitive's gradient outputs, in its order (the optional ones when given)
GRAD_NAMES = ("u", "delta", "A", "B", "C", "h0", "z", "D", "delta_bias")


def selective_scan_backward(u, delta, A, B, C, checkpoints, d_out, d_last_state, D=None, z=None,
                            delta_bias=None, delta_softplus=False, *, stream=None):
    """The scan's backward from the checkpoints of selective_scan_checkpointed on the same inputs.

    d_out: (batch, time, channels) and d_last_state: (batch, channels, state) are the cotangents of
    out and last_state (zeros for an unused one). Returns (out, grads): out is the forward's output
    re-formed from the states the backward recomputes (equal to the forward's to float rounding),
    grads a dict of the gradients with respect to u, delta, A, B, C and h0, and z, D, delta_bias
    when given, each shaped and typed like its argument (h0: (batch, channels, state), u's dtype).
    The same gradients as mx.vjp of selective_scan; not itself differentiable.
    """
    ext, arrays = _prepared(u, delta, A, B, C, D, z, delta_bias, None)
    batch, length, channels = u.shape
    chunks = -(-length // ext.SELECTIVE_SCAN_CHUNK)
    want = (batch, chunks, A.shape[1], channels)
    check.array("checkpoints", checkpoints, 4, "(batch, chunks, state, channels)")
    check.shape("checkpoints", checkpoints, want,
                "(batch, chunks, state, channels) as selective_scan_checkpointed returns them for these inputs")
    check.array("d_out", d_out, 3, "(batch, time, channels)")
    check.shape("d_out", d_out, u.shape, "(batch, time, channels) like u")
    check.array("d_last_state", d_last_state, 3, "(batch, channels, state)")
    check.shape("d_last_state", d_last_state, (batch, channels, A.shape[1]), "(batch, channels, state)")
    dtype = arrays[0].dtype
    ckpt, dout, dlast = cast(dtype, checkpoints, d_out, d_last_state)
    outs = ext.selective_scan_backward(*arrays[:8], bool(delta_softplus), ckpt, dout, dlast, stream=stream)
    given = dict(zip(GRAD_NAMES, (u, delta, A, B, C, u, z, D, delta_bias)))
    names = [k for k in GRAD_NAMES if given[k] is not None]
    grads = {k: g.astype(given[k].dtype) for k, g in zip(names, outs[:-1])}
    return outs[-1].astype(u.dtype), grads
