"""dfnet4: fast, correct DeepFilterNet4 training with MLX."""

# First, before anything imports mlx.core: route MLX's BLAS to OpenBLAS on Linux (docs/blas.md).
from . import _blas

_blas.load()
from ._blas import report as blas_info  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy: `import dfnet4` stays cheap (and the BLAS shim above loads first); the model and MLX
    # come in on first use of dfnet4.Enhancer
    if name == "Enhancer":
        from .stream import Enhancer

        return Enhancer
    raise AttributeError(f"module 'dfnet4' has no attribute {name!r}")
