"""Pure-MLX GRU recurrence: the oracle for dfnet4.ops.gru (autodiffed by MLX).

Exactly mlx.nn.GRU's equations and parameter layout (PyTorch's convention), gate order r, z, n:
    r  = sigmoid(x Wx_r^T + b_r + h Wh_r^T)
    z  = sigmoid(x Wx_z^T + b_z + h Wh_z^T)
    n  = tanh(x Wx_n^T + b_n + r * (h Wh_n^T + bhn))
    h' = (1 - z) * n + z * h
Shapes: x (batch, time, D), Wx (3H, D), Wh (3H, H), b (3H,), bhn (H,), h0 (batch, H) -> (batch, time, H).
h0=None means a zero initial state (as mlx.nn.GRU with hidden=None).
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4.reference._unstack import unstack_time


def gru(x, Wx, Wh, b=None, bhn=None, h0=None):
    H = Wh.shape[1]
    gx = x @ Wx.T
    if b is not None:
        gx = gx + b
    h = h0 if h0 is not None else mx.zeros((x.shape[0], H), dtype=gx.dtype)
    hidden = []
    for gx_t in unstack_time(gx):
        gh = h @ Wh.T
        gh_n = gh[:, 2 * H :]
        if bhn is not None:
            gh_n = gh_n + bhn
        r = mx.sigmoid(gx_t[:, :H] + gh[:, :H])
        z = mx.sigmoid(gx_t[:, H : 2 * H] + gh[:, H : 2 * H])
        n = mx.tanh(gx_t[:, 2 * H :] + r * gh_n)
        h = (1 - z) * n + z * h
        hidden.append(h)
    return mx.stack(hidden, axis=1)
