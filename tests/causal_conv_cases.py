"""Shared helpers for the causal-conv tests: random inputs and the outputs and every gradient of a
causal_conv1d implementation under fixed cotangents."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

NAMES = ("x", "weight", "bias", "window")


def make_inputs(batch, time, channels, width, bias=True, window=True, seed=0, dtype=mx.float32):
    """x, window ~ N(0, 1); weight, bias uniform in the Mamba block's init range 1/sqrt(K), so the
    pre-activations are O(1) and SiLU's curved part is exercised. Absent parts are None."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(width)
    arr = lambda a: mx.array(a.astype(np.float64)).astype(dtype)  # noqa: E731
    return {
        "x": arr(rng.standard_normal((batch, time, channels))),
        "weight": arr(rng.uniform(-bound, bound, (width, channels))),
        "bias": arr(rng.uniform(-bound, bound, (channels,))) if bias else None,
        "window": arr(rng.standard_normal((batch, width - 1, channels))) if window else None,
    }


def cotangents(inputs, seed=1):
    """Fixed random cotangents of y and of the new window."""
    x, weight = inputs["x"], inputs["weight"]
    batch, _, channels = x.shape
    rng = np.random.default_rng(seed)
    return [
        mx.array(rng.standard_normal(x.shape)).astype(x.dtype),
        mx.array(rng.standard_normal((batch, weight.shape[0] - 1, channels))).astype(x.dtype),
    ]


def vjp(conv, inputs, activation, cots):
    """((y, new_window), {name: gradient}) of conv for every input that is not None."""
    present = [k for k in NAMES if inputs[k] is not None]

    def f(*arrays):
        kw = dict(inputs)
        kw.update(zip(present, arrays))
        return conv(**kw, activation=activation, return_window=True)

    outs, grads = mx.vjp(f, [inputs[k] for k in present], cots)
    return tuple(outs), dict(zip(present, grads))
