"""MLX's buffer cache for training.

MLX keeps freed buffers in a cache for reuse. On Apple GPUs the cache may grow to the memory limit,
but the CPU backend's default limit is 32 MiB: every activation larger than that (a DfNet4 step at
batch 8 x 500 frames has hundreds of them) goes back to the OS when freed and comes back as fresh
zeroed pages on the next step, about 1-2 GB of page faults per step. A training process reuses the
same sizes every step, so it should keep them.
"""

from __future__ import annotations

import mlx.core as mx

GiB = 1024**3


def parse_cache_limit(value: str | float | None, name: str = "buffer_cache_gib") -> float | None:
    """None or "auto" -> None; otherwise a number of GiB >= 0 (ValueError naming `name` if not)."""
    if value is None or value == "auto":
        return None
    try:
        gib = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: got {value!r}, need \"auto\" or a number of GiB >= 0") from None
    if not gib >= 0:  # also rejects NaN
        raise ValueError(f"{name}: got {value!r}, need \"auto\" or a number of GiB >= 0")
    return gib


def configure_buffer_cache(gib: float | None = None) -> int:
    """Set MLX's buffer-cache limit: `gib` GiB, or with None MLX's memory limit (what MLX already
    does on Apple GPUs). Returns the limit set, in bytes."""
    limit = mx.get_memory_limit() if gib is None else int(gib * GiB)
    mx.set_cache_limit(limit)
    return limit
