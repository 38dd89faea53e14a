"""Shared helper for the depthwise-conv op tests: random inputs."""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def make_inputs(shape, width, seed, dtype=mx.float32):
    """x ~ N(0, 1) of `shape` (..., freqs, channels), weight (width, channels) ~ N(0, 1/width)."""
    rng = np.random.default_rng(seed)
    arr = lambda a: mx.array(a, dtype=dtype)  # noqa: E731  (converted on the host: no float64 on a GPU)
    return arr(rng.standard_normal(shape)), arr(rng.standard_normal((width, shape[-1])) / np.sqrt(width))
