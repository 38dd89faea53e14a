"""The automatic choice of the model-level fused ops (batch norm, depthwise conv, spectral loss).

`fused=None` means: the fused primitive when dfnet4's extension is importable and has kernels for
MLX's default device: the CPU always, a GPU in a Metal build (macOS, where their Metal kernels are
launched like the backbones' ones). Elsewhere (a GPU in a build without GPU kernels, such as a CUDA
build of MLX) the automatic choice is the pure-MLX path. `fused=True` asks for the primitive:
without the extension that is an error here, on a device without kernels it is the primitive's own
clear error; `fused=False` is the pure-MLX path.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from dfnet4 import _extension


def check(fused: bool | None, what: str) -> bool | None:
    """Validate a construction-time choice: fused=True needs the extension; None is decided per call."""
    return None if fused is None else _extension.require(fused, what)


@cache
def gpu_kernels() -> bool:
    """Whether this build of the extension launches its kernels on a GPU (a Metal build)."""
    return bool(_extension.load().build_info()["metal"])


def use_fused(fused: bool | None) -> bool:
    """Whether to run the fused primitive now (see the module doc)."""
    if fused is not None:
        return fused
    if not _extension.available():
        return False
    return mx.default_device().type == mx.cpu or gpu_kernels()
