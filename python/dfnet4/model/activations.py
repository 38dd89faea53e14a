"""Activations whose MLX backward passes are slow on the CPU, with cheaper ones of the same value.

MLX differentiates tanh as cotangent / cosh(x)^2: a per-element libm `coshf` on one thread, for
DFN3's deep-filter coefficients (batch x frames x 960 values) ~25 ms of every training step more
than the form used here, cotangent * (1 - tanh(x)^2) from the forward's output (PyTorch's tanh
backward; three multiply/add passes). The two agree to float32 rounding (tests/test_activations.py
checks both against float64).
"""

from __future__ import annotations

import mlx.core as mx


@mx.custom_function
def tanh(x: mx.array) -> mx.array:
    """mx.tanh, differentiated from its output."""
    return mx.tanh(x)


@tanh.vjp
def _tanh_vjp(x, cotangent, y):  # one argument, one output: arrays, not tuples
    return cotangent * (1 - mx.square(y))
