"""Shared helpers for the GRU tests: random parameters and 'everything' gradients of a GRU function."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

NAMES = ("x", "Wx", "Wh", "b", "bhn", "h0")


def make_inputs(B, T, D, H, bias=True, h0=True, seed=0, dtype=mx.float32):
    """Inputs in mlx.nn.GRU's init range; None for the parts switched off."""
    rng = np.random.default_rng(seed)
    s = 1.0 / np.sqrt(H)
    u = lambda *shape: mx.array(rng.uniform(-s, s, shape), dtype=dtype)  # noqa: E731
    return {
        "x": mx.array(rng.standard_normal((B, T, D)), dtype=dtype),
        "Wx": u(3 * H, D),
        "Wh": u(3 * H, H),
        "b": u(3 * H) if bias else None,
        "bhn": u(H) if bias else None,
        "h0": mx.array(rng.standard_normal((B, H)) * 0.5, dtype=dtype) if h0 else None,
    }


def cotangent(shape, seed=1, dtype=mx.float32):
    """A fixed random output cotangent, so every hidden unit and step gets a distinct weight."""
    return mx.array(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def value_and_grads(fn, inputs, cot):
    """(hs, {name: gradient}) of sum(fn(**inputs) * cot) for every input that is not None."""
    present = [k for k in NAMES if inputs[k] is not None]

    def loss(*arrays):
        kw = dict(inputs)
        kw.update(zip(present, arrays))
        return (fn(**kw) * cot).sum()

    args = [inputs[k] for k in present]
    grads = mx.grad(loss, argnums=list(range(len(present))))(*args)
    hs = fn(**inputs)
    mx.eval(hs, grads)
    return hs, dict(zip(present, grads))


def nn_gru(x, Wx, Wh, b=None, bhn=None, h0=None):
    """mlx.nn.GRU with the given weights loaded (it needs b and bhn both set or both None)."""
    m = nn.GRU(x.shape[-1], Wh.shape[1], bias=b is not None)
    m.Wx, m.Wh = Wx, Wh
    if b is not None:
        m.b, m.bhn = b, bhn
    return m(x, h0)


def max_scaled_error(a, ref):
    """max |a - ref| relative to the reference's largest magnitude (at least 1)."""
    a = np.array(a.astype(mx.float64, stream=mx.cpu))  # on the CPU: the GPU has no float64
    ref = np.array(ref.astype(mx.float64, stream=mx.cpu))
    assert a.shape == ref.shape, (a.shape, ref.shape)
    return float(np.max(np.abs(a - ref)) / max(1.0, float(np.max(np.abs(ref)))))
