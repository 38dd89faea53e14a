"""Shared helpers for the compressed-spectral-loss op tests: spectra with magnitudes over several
decades (as real spectra have), fixed cotangents, and the terms and both gradients of an
implementation."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

GAMMA = 0.3


def make_spectra(shape, seed=0, real_pairs=False, dtype=mx.float32):
    """(pred, target): complex64 arrays of `shape`, or with real_pairs real (*shape, 2) arrays of
    `dtype` holding (re, im). Magnitudes log-uniform over e^-6 .. e^3; the target differs from the
    prediction by ~50 % in magnitude and ~0.5 rad in phase."""
    rng = np.random.default_rng(seed)
    mag = np.exp(rng.uniform(-6, 3, shape))
    p = mag * np.exp(1j * rng.uniform(0, 2 * np.pi, shape))
    t = p * np.exp(rng.normal(0, 0.5, shape) + 1j * rng.normal(0, 0.5, shape))
    if not real_pairs:
        return mx.array(p.astype(np.complex64)), mx.array(t.astype(np.complex64))
    pair = lambda z: mx.array(np.stack([z.real, z.imag], -1), dtype=dtype)  # noqa: E731  (host-side: no float64 on a GPU)
    return pair(p), pair(t)


def as_pairs64(z):
    """A complex64 array as a float64 (..., 2) array of its (re, im) values (exact)."""
    z = np.array(z)
    return mx.array(np.stack([z.real, z.imag], -1), dtype=mx.float64)


def cotangents(dtype=mx.float32):
    """Fixed cotangents of the two terms."""
    return [mx.array(0.7, dtype=dtype), mx.array(1.3, dtype=dtype)]


def vjp(loss, pred, target, cots):
    """((mag, cplx), (d pred, d target)) of loss under the cotangents of both terms."""
    outs, grads = mx.vjp(lambda p, t: loss(p, t, GAMMA), [pred, target], cots)
    return tuple(outs), tuple(grads)
