"""What the CLIs share: error reporting with a clear message and exit status 2."""

from __future__ import annotations

import sys


def fail(prog: str, message: str, status: int = 2) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def entrypoint_setup() -> None:
    """First call of every main(): make sure MLX's matmuls use the BLAS shim (docs/blas.md; it may
    re-execute the command with LD_PRELOAD if mlx.core was loaded too early)."""
    from dfnet4 import _blas

    _blas.ensure_for_entrypoint()
