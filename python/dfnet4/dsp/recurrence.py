"""The exponential running mean s_t = alpha * s_{t-1} + (1 - alpha) * x_t, vectorised over time.

The recurrence is linear, so it is computed blockwise: inside a block of L frames one matmul with
the L x L lower-triangular matrix of decay powers; the states carried between blocks follow the
same recurrence with decay alpha^L over T / L elements, solved recursively. Depth log_L(T), no
per-frame Python loop, and unlike a cumulative sum scaled by alpha^-t it cannot overflow.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

_BLOCK = 64


def _decay_matrix(decay: float, n: int) -> tuple[mx.array, mx.array]:
    """P[i, k] = decay^(i - k) for k <= i (else 0), and the powers decay^(i + 1), i < n."""
    i = np.arange(n)
    e = (i[:, None] - i[None, :]).astype(np.float64)
    p = np.where(e >= 0, np.power(decay, np.maximum(e, 0)), 0.0)
    return mx.array(p.astype(np.float32)), mx.array(np.power(decay, i + 1.0).astype(np.float32))


def _scan(u: mx.array, decay: float, s0: mx.array) -> mx.array:
    """s_t = decay * s_{t-1} + u_t over axis 1 of u (B, T, F), s_{-1} = s0 (B, F)."""
    t = u.shape[1]
    if t <= _BLOCK:
        p, pw = _decay_matrix(decay, t)
        return mx.einsum("ik,bkf->bif", p, u) + pw[None, :, None] * s0[:, None, :]
    b, f = u.shape[0], u.shape[2]
    nblk = -(-t // _BLOCK)
    u = mx.pad(u, [(0, 0), (0, nblk * _BLOCK - t), (0, 0)]).reshape(b, nblk, _BLOCK, f)
    p, pw = _decay_matrix(decay, _BLOCK)
    local = mx.einsum("ik,bckf->bcif", p, u)  # each block started from zero
    ends = _scan(local[:, :, -1], decay**_BLOCK, s0)  # state at the end of each block
    before = mx.concatenate([s0[:, None], ends[:, :-1]], axis=1)  # state entering each block
    s = local + pw[None, None, :, None] * before[:, :, None, :]
    return s.reshape(b, nblk * _BLOCK, f)[:, :t]


def exponential_mean(x: mx.array, alpha: float, state: mx.array) -> mx.array:
    """Running mean s_t = alpha s_{t-1} + (1 - alpha) x_t along axis 1 of x (B, T, F).

    state: (B, F) or (F,), the value s_{-1}. Returns all s_t (B, T, F); s[:, -1] continues it.
    """
    if x.ndim != 3:
        raise ValueError(f"exponential_mean: x must have shape (batch, time, features), got {tuple(x.shape)}")
    s0 = mx.broadcast_to(state, (x.shape[0], x.shape[2])).astype(x.dtype)
    if x.shape[1] == 0:
        return x
    return _scan((1.0 - alpha) * x, float(alpha), s0)
