"""Pieces of a batch on parallel MLX CPU streams.

MLX's CPU backend runs each op on one thread per stream, its FFTs and most elementwise ops included,
so a stage built of such ops keeps one core busy however many there are. Independent pieces of a
batch, each on its own CPU stream, run side by side. The multi-resolution STFT loss and the
model's deep filter + ERB mask use it (train/losses.py, model/dfnet4.py; docs/model.md "Speed").
dfnet4's kernels and the BLAS shim are safe to call from several streams at once (their threads
are per call, or one product at a time).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Callable

import mlx.core as mx

_streams: list[mx.Stream] = []  # made once: each MLX stream owns a thread


def worker_threads() -> int:
    """Threads dfnet4 works with on the CPU: DFNET4_NUM_THREADS when set (>= 1), else every core
    (the rule csrc/parallel.h applies to the kernels)."""
    env = os.environ.get("DFNET4_NUM_THREADS")
    if env and env.isdigit() and int(env) >= 1:
        return int(env)
    return os.cpu_count() or 1


def batch_pieces(batch: int) -> list[tuple[slice, mx.Stream | None]]:
    """Near-equal slices of range(batch), each with the stream to run it on (None: the caller's).
    One piece, the whole batch, unless MLX's default device is the CPU and dfnet4 has several
    threads (on the GPU every op is already parallel)."""
    if batch < 1:
        raise ValueError(f"batch_pieces: batch must be >= 1, got {batch}")
    count = min(batch, worker_threads()) if mx.default_device() == mx.cpu else 1
    while len(_streams) < count - 1:
        _streams.append(mx.new_stream(mx.cpu))
    bounds = [batch * i // count for i in range(count + 1)]
    return [(slice(bounds[i], bounds[i + 1]), None if i == 0 else _streams[i - 1]) for i in range(count)]


def map_pieces(fn: Callable, *arrays: mx.array) -> list[tuple[slice, object]]:
    """[(rows, fn(*(a[rows] for a in arrays)))] over batch_pieces of the arrays' first axis, each
    call made on its piece's stream; one call on the whole arrays when there is one piece."""
    pieces = batch_pieces(arrays[0].shape[0])
    if len(pieces) == 1:
        return [(pieces[0][0], fn(*arrays))]
    results = []
    for rows, stream in pieces:
        with mx.stream(stream) if stream is not None else nullcontext():
            results.append((rows, fn(*(a[rows] for a in arrays))))
    return results
