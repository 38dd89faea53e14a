"""Per-step views of a (batch, time, ...) array for the reference loops, with a linear-time VJP."""

from __future__ import annotations

import mlx.core as mx


@mx.custom_function
def unstack_time(x):
    """Split (batch, time, ...) into `time` arrays (batch, ...).

    Plain slicing inside a differentiated loop makes every step's VJP a full-size scatter, so the
    backward becomes quadratic in time; this VJP is one mx.stack instead.
    """
    return tuple(x[:, t] for t in range(x.shape[1]))


@unstack_time.vjp
def _unstack_time_vjp(primals, cotangents, outputs):
    return mx.stack(list(cotangents), axis=1)
