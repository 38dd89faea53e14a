"""Pure-MLX selective scan: the oracle the fused op is tested against.

Semantics of mamba-ssm's `selective_scan_fn` with a real A, channels-last:

    dt[b,t,d]   = delta[b,t,d] (+ delta_bias[d]), then softplus if delta_softplus
    h_t[b,d,n]  = exp(dt[b,t,d] * A[d,n]) * h_{t-1}[b,d,n] + dt[b,t,d] * B[b,t,n] * u[b,t,d]
    y[b,t,d]    = sum_n C[b,t,n] * h_t[b,d,n] + D[d] * u[b,t,d]
    out         = y * silu(z)  (when z is given)

with h_{-1} = h0 (or zeros) and last_state = h_{L-1}, shape (batch, channels, state).
Computed in float32 (float64 when any input is float64); the output has u's dtype.
Gradients come from MLX's autodiff of this loop.
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4.reference._unstack import unstack_time


def _compute_dtype(*arrays):
    return mx.float64 if any(a is not None and a.dtype == mx.float64 for a in arrays) else mx.float32


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, h0=None,
                   return_last_state=False):
    """Reference selective scan; same signature and semantics as `dfnet4.ops.selective_scan`.

    u, delta, z: (batch, time, channels); A: (channels, state); B, C: (batch, time, state);
    D, delta_bias: (channels,); h0: (batch, channels, state).
    Returns out (batch, time, channels), or (out, last_state) when return_last_state.
    """
    out_dtype = u.dtype
    ct = _compute_dtype(u, delta, A, B, C, D, z, delta_bias, h0)
    cast = lambda x: None if x is None else x.astype(ct)  # noqa: E731
    u, delta, A, B, C, D, z, delta_bias, h0 = map(cast, (u, delta, A, B, C, D, z, delta_bias, h0))

    batch, length, channels = u.shape
    state = A.shape[1]

    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = mx.logaddexp(dt, mx.array(0.0, dtype=ct))  # softplus

    h = mx.zeros((batch, channels, state), dtype=ct) if h0 is None else h0
    dts, us, Bs, Cs = (unstack_time(x) for x in (dt, u, B, C))
    ys = []
    for t in range(length):
        decay = mx.exp(dts[t][:, :, None] * A)  # (batch, channels, state)
        drive = (dts[t] * us[t])[:, :, None] * Bs[t][:, None, :]
        h = decay * h + drive
        ys.append((h * Cs[t][:, None, :]).sum(axis=-1))  # (batch, channels)
    y = mx.stack(ys, axis=1)

    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * (z * mx.sigmoid(z))
    y = y.astype(out_dtype)
    if return_last_state:
        return y, h.astype(out_dtype)
    return y
