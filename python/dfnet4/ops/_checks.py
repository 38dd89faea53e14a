"""Argument checks shared by the fused ops: ValueErrors that name the op, the argument and what was
expected, raised when the graph is built (never inside a kernel)."""

from __future__ import annotations

import mlx.core as mx

FLOATS = (mx.float16, mx.bfloat16, mx.float32, mx.float64)


def describe(a) -> str:
    return f"shape {tuple(a.shape)} and dtype {a.dtype}"


def check_float_array(op: str, name: str, a, ndim: int, what: str) -> None:
    if not isinstance(a, mx.array):
        raise ValueError(f"{op}: {name} must be an mx.array {what}, got {type(a).__name__}")
    if a.dtype not in FLOATS:
        raise ValueError(
            f"{op}: {name} must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got {describe(a)}"
        )
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must have shape {what}, got {describe(a)}")


def check_shape(op: str, name: str, a, want, what: str) -> None:
    if tuple(a.shape) != tuple(want):
        raise ValueError(f"{op}: {name} must have shape {what} = {tuple(want)}, got {describe(a)}")
