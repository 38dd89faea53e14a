"""Shared inputs and comparison helpers for the selective-scan tests (no tests of its own)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

OPTIONAL = ("D", "z", "delta_bias", "h0")
ALL_OPTIONS = frozenset(OPTIONAL) | {"softplus"}


def make_inputs(batch, time, channels, state, options=ALL_OPTIONS, seed=0, dtype=mx.float32):
    """Inputs of a stable scan: A < 0 and dt > 0, so states stay O(1) over any length.

    Without softplus, delta itself is dt and is drawn positive. Returns (kwargs, delta_softplus).
    """
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    softplus = "softplus" in options
    if softplus:
        delta = normal(batch, time, channels)
    else:
        delta = rng.uniform(0.01, 0.6, (batch, time, channels))
    arrays = {
        "u": normal(batch, time, channels),
        "delta": delta,
        "A": -np.exp(0.5 * normal(channels, state)),
        "B": normal(batch, time, state),
        "C": normal(batch, time, state),
        "D": normal(channels),
        "z": normal(batch, time, channels),
        "delta_bias": 0.3 * normal(channels) if softplus else rng.uniform(0.0, 0.2, channels),
        "h0": normal(batch, channels, state),
    }
    kwargs = {
        k: mx.array(v.astype(np.float64)).astype(dtype)
        for k, v in arrays.items()
        if k not in OPTIONAL or k in options
    }
    return kwargs, softplus


def _float64(x):
    # mx.array(numpy float64) would round to float32; go the other way only (on the CPU: the GPU
    # has no float64).
    if isinstance(x, mx.array):
        return np.array(x.astype(mx.float64, stream=mx.cpu))
    return np.asarray(x, dtype=np.float64)


def assert_close(actual, expected, name, rtol=1e-4, atol_scale=1e-4):
    """|actual - expected| <= rtol*|expected| + atol_scale*max|expected|, elementwise.

    The atol term is relative to the array's largest magnitude so that entries that are sums with
    cancellation (dA, dB, dC, sums over time and channels) are judged against the size of their terms.
    """
    a, e = _float64(actual), _float64(expected)
    assert a.shape == e.shape, f"{name}: shape {a.shape} != expected {e.shape}"
    assert np.all(np.isfinite(e)), f"{name}: the expected values are not finite"
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    err = np.abs(a - e)
    bound = rtol * np.abs(e) + atol_scale * scale + 1e-30
    worst = np.unravel_index(np.argmax(err / bound), err.shape) if err.size else ()
    assert np.all(err <= bound), (
        f"{name}: max |diff| {err.max():.3e} (max |expected| {scale:.3e}); worst at {worst}: "
        f"{a[worst]!r} vs {e[worst]!r}"
    )
