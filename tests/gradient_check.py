"""Directional finite differences for the float64 gradient checks of the fused ops."""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def directional_derivatives(loss, values, seed, eps=1e-6, directions=1):
    """(i, analytic, numeric) for `directions` random directions v of each argument i of loss: the
    hand-written gradient along v against the central difference (loss(x + eps v) - loss(x - eps v)) /
    2 eps. In float64: truncation O(eps^2), rounding O(1e-16 / eps) ~ 1e-10."""
    grads = mx.grad(loss, argnums=tuple(range(len(values))))(*values)
    rng = np.random.default_rng(seed)
    for i, value in enumerate(values):
        for _ in range(directions):
            v = mx.array(rng.standard_normal(value.shape), dtype=mx.float64)
            plus, minus = list(values), list(values)
            plus[i] = value + eps * v
            minus[i] = value - eps * v
            numeric = (loss(*plus) - loss(*minus)).item() / (2 * eps)
            yield i, (grads[i] * v).sum().item(), numeric
