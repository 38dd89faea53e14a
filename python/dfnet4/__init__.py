"""dfnet4: fast, correct DeepFilterNet4 training with MLX."""

# First, before anything imports mlx.core: route MLX's BLAS to OpenBLAS on Linux (docs/blas.md).
from . import _blas

_blas.load()
from ._blas import report as blas_info  # noqa: E402

__version__ = "0.1.0"
