"""Fused GRU recurrence: mlx.nn.GRU's equations, one MLX matmul for the input projection and one
custom primitive (dfnet4._ext.gru_forward) for the whole recurrence, with a hand-written backward.
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4 import _extension

_FLOATS = (mx.float16, mx.bfloat16, mx.float32, mx.float64)


def _check_array(name, a, ndim, what):
    if not isinstance(a, mx.array):
        raise ValueError(f"gru: {name} must be an mx.array, got {type(a).__name__}")
    if a.dtype not in _FLOATS:
        raise ValueError(f"gru: {name} has dtype {a.dtype}, needs a floating dtype "
                         "(float16, bfloat16, float32 or float64)")
    if a.ndim != ndim:
        raise ValueError(f"gru: {name} has shape {tuple(a.shape)}, needs rank {ndim} {what}")


def _check_shape(name, a, want, what):
    if tuple(a.shape) != want:
        raise ValueError(f"gru: {name} has shape {tuple(a.shape)}, needs {want} {what}")


def _validate(x, Wx, Wh, b, bhn, h0):
    _check_array("x", x, 3, "(batch, time, input_size)")
    _check_array("Wx", Wx, 2, "(3*hidden, input_size)")
    _check_array("Wh", Wh, 2, "(3*hidden, hidden)")
    batch, time, D = x.shape
    H = Wh.shape[1]
    _check_shape("Wh", Wh, (3 * H, H), "(3*hidden, hidden), rows ordered r, z, n")
    _check_shape("Wx", Wx, (3 * H, D), f"(3*hidden, input_size) for hidden={H} and x's input_size={D}")
    if b is not None:
        _check_array("b", b, 1, "(3*hidden,)")
        _check_shape("b", b, (3 * H,), f"(3*hidden,) for hidden={H}")
    if bhn is not None:
        _check_array("bhn", bhn, 1, "(hidden,)")
        _check_shape("bhn", bhn, (H,), f"(hidden,) for hidden={H}")
    if h0 is not None:
        _check_array("h0", h0, 2, "(batch, hidden)")
        _check_shape("h0", h0, (batch, H), f"(batch, hidden) for x's batch={batch} and hidden={H}")
    if time == 0:
        raise ValueError(f"gru: x has shape {tuple(x.shape)}, needs at least one time step")
    if H == 0:
        raise ValueError("gru: Wh has hidden size 0, needs at least 1")


def gru(x, Wx, Wh, b=None, bhn=None, h0=None):
    """All hidden states (batch, time, hidden) of a GRU over x (batch, time, input_size).

    Parameters as in mlx.nn.GRU (weights are interchangeable): Wx (3H, D), Wh (3H, H), b (3H,),
    bhn (H,), gate order r, z, n; h0 (batch, H) is the initial state (zeros when None).
    Computes in float32 (float64 when an input is float64); the result has the promoted dtype of
    the inputs, so float16/bfloat16 inputs give float16/bfloat16 states.
    """
    _validate(x, Wx, Wh, b, bhn, h0)
    ext = _extension.load()
    given = [a for a in (x, Wx, Wh, b, bhn, h0) if a is not None]
    out_dtype = mx.result_type(*given)
    cdt = mx.float64 if out_dtype == mx.float64 else mx.float32
    x, Wx, Wh = x.astype(cdt), Wx.astype(cdt), Wh.astype(cdt)
    # The input projection of every step at once: one matmul done by MLX.
    gx = mx.addmm(b.astype(cdt), x, Wx.T) if b is not None else x @ Wx.T
    # Absent bhn / h0 stay absent (zeros inside the primitive): no shape-fixed constants in the
    # graph, so shapeless compilation can change batch and time.
    bhn = bhn.astype(cdt) if bhn is not None else None
    h0 = h0.astype(cdt) if h0 is not None else None
    hs, _gates = ext.gru_forward(gx, Wh, bhn, h0)
    return hs.astype(out_dtype)
