"""Shared helpers for the batch-norm op tests: inputs kept away from the ReLU's kink, fixed
cotangents, and the outputs and every gradient of a batch_norm implementation."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

NAMES = ("x", "weight", "bias")
EPS = 1e-5


def make_inputs(shape, seed=0, dtype=mx.float32, offset=1.5, relu_margin=1e-3):
    """x with an offset mean (as after a conv), weight and bias ~ N(0, 1). No normalised value lies
    within `relu_margin` of the ReLU's kink: there, two correct implementations whose statistics
    differ by a rounding may put an element on different sides, and its gradient differs by all of
    it. Values near the kink are pushed away and the batch re-standardised until none is left."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    z = rng.standard_normal(shape)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    axes = tuple(range(len(shape) - 1))
    for _ in range(20):
        z = (z - z.mean(axes)) / np.sqrt(z.var(axes) + 1e-30)
        pre = z * w + b
        near = np.abs(pre) < 2 * relu_margin
        if not near.any():
            break
        # move each such value by 4 margins (in normalised units of its channel) away from the kink
        z = np.where(near, z + np.sign(pre + 1e-30) * np.sign(w) * 4 * relu_margin / np.abs(w), z)
    else:
        raise AssertionError("could not keep the inputs away from the ReLU's kink")
    scale = rng.uniform(0.5, 3.0, c)
    x = z * scale + offset  # x's own statistics give back z up to eps
    # converted on the host: on the GPU a float64 array could not be cast (Metal has no double)
    arr = lambda a: mx.array(np.asarray(a, np.float64), dtype=dtype)  # noqa: E731
    return {"x": arr(x), "weight": arr(w), "bias": arr(b)}


def cotangents(inputs, seed=1):
    """Fixed random cotangents of y, mean and var."""
    x = inputs["x"]
    rng = np.random.default_rng(seed)
    c = x.shape[-1]
    return [mx.array(rng.standard_normal(s), dtype=x.dtype) for s in (x.shape, (c,), (c,))]


def vjp(bn, inputs, relu, cots):
    """((y, mean, var), {name: gradient}) of bn under the cotangents of all three outputs."""

    def f(x, weight, bias):
        return bn(x, weight, bias, EPS, relu)

    outs, grads = mx.vjp(f, [inputs[k] for k in NAMES], cots)
    return tuple(outs), dict(zip(NAMES, grads))
