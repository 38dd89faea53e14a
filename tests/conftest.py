# Import dfnet4 before any test module imports mlx.core: the whole suite then runs MLX on the BLAS
# users get (OpenBLAS through dfnet4's shim on Linux, docs/blas.md), without the import-order warning.
import dfnet4  # noqa: F401
