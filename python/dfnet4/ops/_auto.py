"""The automatic choice of the model-level fused ops (batch norm, depthwise conv, spectral loss).

`fused=None` means: the fused primitive when dfnet4's extension is importable and MLX's default
device is the CPU. Their Metal kernels are written and pass the emulated-Metal tests, but the host
code that launches them is not written yet, so on a GPU the automatic choice is the pure-MLX path
(as before they existed). `fused=True` asks for the primitive: without the extension that is an
error here, on a GPU it is the primitive's own clear error; `fused=False` is the pure-MLX path.
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4 import _extension

GPU_HOST_CODE = False  # True once their eval_gpu launches the Metal kernels


def check(fused: bool | None, what: str) -> bool | None:
    """Validate a construction-time choice: fused=True needs the extension."""
    if fused is None:
        return None
    if fused and not _extension.available():
        raise RuntimeError(
            f"{what}: fused=True needs dfnet4's compiled extension, which is not importable; "
            "pass fused=False (or None) to use the pure-MLX path"
        )
    return bool(fused)


def use_fused(fused: bool | None) -> bool:
    """Whether to run the fused primitive now (see the module doc)."""
    if fused is not None:
        return fused
    return _extension.available() and (GPU_HOST_CODE or mx.default_device().type == mx.cpu)
