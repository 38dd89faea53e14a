"""Shared helpers for the RMSNorm op tests: inputs, fixed cotangents, and the output and both
gradients of an rms_norm implementation."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

NAMES = ("x", "weight")
EPS = 1e-5


def make_inputs(shape, seed=0, dtype=mx.float32):
    """x ~ N(0, 1) times a per-row scale in [0.1, 10] (rows of very different RMS, as activations
    have), weight ~ N(1, 0.5^2) (around its init of ones, signs mixed)."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    rows_shape = tuple(shape[:-1]) + (1,)
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-1, 1, rows_shape)
    w = 1.0 + 0.5 * rng.standard_normal(c)
    # converted on the host: on the GPU a float64 array could not be cast (Metal has no double)
    arr = lambda a: mx.array(np.asarray(a, np.float64), dtype=dtype)  # noqa: E731
    return {"x": arr(x), "weight": arr(w)}


def cotangent(inputs, seed=1):
    """A fixed random cotangent of y."""
    x = inputs["x"]
    return mx.array(np.random.default_rng(seed).standard_normal(x.shape), dtype=x.dtype)


def vjp(rms, inputs, cot, eps=EPS):
    """(y, {name: gradient}) of rms under the cotangent of y."""

    def f(x, weight):
        return rms(x, weight, eps)

    outs, grads = mx.vjp(f, [inputs[k] for k in NAMES], [cot])
    return outs[0], dict(zip(NAMES, grads))
