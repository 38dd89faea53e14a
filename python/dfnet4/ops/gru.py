"""Fused GRU recurrence: mlx.nn.GRU's equations, one MLX matmul for the input projection and one
custom primitive (dfnet4._ext.gru_forward) for the whole recurrence, with a hand-written backward.
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4 import _extension
from dfnet4.ops._checks import Checks, cast, compute_dtype

check = Checks("gru")


def _validate(x, Wx, Wh, b, bhn, h0):
    check.array("x", x, 3, "(batch, time, input_size)")
    check.array("Wx", Wx, 2, "(3*hidden, input_size)")
    check.array("Wh", Wh, 2, "(3*hidden, hidden)")
    batch, time, D = x.shape
    H = Wh.shape[1]
    check.shape("Wh", Wh, (3 * H, H), "(3*hidden, hidden), rows ordered r, z, n")
    check.shape("Wx", Wx, (3 * H, D), f"(3*hidden, input_size) for hidden={H} and x's input_size={D}")
    check.optional("b", b, (3 * H,), f"(3*hidden,) for hidden={H}")
    check.optional("bhn", bhn, (H,), f"(hidden,) for hidden={H}")
    check.optional("h0", h0, (batch, H), f"(batch, hidden) for x's batch={batch} and hidden={H}")
    if time == 0:
        check.fail(f"x needs at least one time step, got shape {tuple(x.shape)}")
    if H == 0:
        check.fail("Wh has hidden size 0, needs at least 1")


def gru(x, Wx, Wh, b=None, bhn=None, h0=None):
    """All hidden states (batch, time, hidden) of a GRU over x (batch, time, input_size).

    Parameters as in mlx.nn.GRU (weights are interchangeable): Wx (3H, D), Wh (3H, H), b (3H,),
    bhn (H,), gate order r, z, n; h0 (batch, H) is the initial state (zeros when None).
    Computes in float32 (float64 when an input is float64, CPU only); the result has the promoted
    dtype of the inputs, so float16/bfloat16 inputs give float16/bfloat16 states.
    """
    _validate(x, Wx, Wh, b, bhn, h0)
    ext = _extension.load()
    out_dtype = mx.result_type(*(a for a in (x, Wx, Wh, b, bhn, h0) if a is not None))
    x, Wx, Wh, b, bhn, h0 = cast(compute_dtype(x, Wx, Wh, b, bhn, h0), x, Wx, Wh, b, bhn, h0)
    # The input projection of every step at once: one matmul done by MLX (then + b, not mx.addmm,
    # whose reshapes would fix the first call's shapes in a shapeless-compiled graph).
    gx = x @ Wx.T
    if b is not None:
        gx = gx + b
    # Absent bhn / h0 stay absent (zeros inside the primitive): no shape-fixed constants in the
    # graph, so shapeless compilation can change batch and time.
    hs, _gates = ext.gru_forward(gx, Wh, bhn, h0)
    return hs.astype(out_dtype)
