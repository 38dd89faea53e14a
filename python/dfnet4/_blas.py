"""Give MLX an optimised BLAS on Linux, and report which BLAS it really uses (docs/blas.md).

The mlx-cpu wheel links netlib's reference BLAS (~6 GFLOP/s for a 1024^2 sgemm on one core).
dfnet4's shim (`dfnet4/_blas_shim.so`, csrc/blas_shim/) exports the BLAS/LAPACK names libmlx
imports and forwards them to scipy-openblas32's OpenBLAS. Python imports extension modules with
RTLD_NOW, so libmlx binds those names once, when mlx.core is first imported: the shim must be in
the global symbol scope before that, which is why `dfnet4/__init__.py` calls `load()` first.
This module imports nothing heavy at import time (no mlx, no numpy).
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
import warnings
from pathlib import Path

ENV_CHOICE = "DFNET4_BLAS"  # "reference" keeps MLX's bundled BLAS; "openblas" or unset: the shim
ENV_REEXEC = "DFNET4_BLAS_REEXEC"  # set in a process re-executed by ensure_for_entrypoint()
SHIM_FILE = "_blas_shim.so"
# OpenBLAS's threads spin while waiting: on a machine whose cores are busy (shared CI, a data
# loader) two threads ran a 512^3 sgemm at 6 GFLOP/s against 93 for one (docs/blas.md).
# OPENBLAS_NUM_THREADS, when set, wins; set_threads() changes it at run time.
DEFAULT_THREADS = 1
_MARKER = "dfnet4_blas_shim_openblas_config"  # exported by the shim only

# Outcome of load(), kept for report(): one of
#   "loaded"      this process loaded the shim before mlx.core
#   "preloaded"   the shim was already in the global scope (LD_PRELOAD, or an earlier load)
#   "disabled"    DFNET4_BLAS=reference
#   "unsupported" not Linux (macOS: MLX uses Accelerate)
#   "unavailable" the shim is not built, or it or OpenBLAS cannot be loaded (see _reason)
#   "too-late"    mlx.core was imported before dfnet4; MLX keeps the BLAS it bound then
_status: str | None = None
_reason = ""
_handle: ctypes.CDLL | None = None
_warned = False


def shim_path() -> Path:
    """Where the shim is installed (it may not exist: macOS, or built with DFNET4_BLAS_SHIM=OFF)."""
    return Path(__file__).resolve().with_name(SHIM_FILE)


def _shim_in_global_scope() -> bool:
    return hasattr(ctypes.CDLL(None), _MARKER)


def _requested() -> str:
    choice = os.environ.get(ENV_CHOICE, "").strip().lower()
    if choice not in ("", "openblas", "reference"):
        raise ValueError(
            f"{ENV_CHOICE} must be 'openblas' (the default) or 'reference', got {choice!r}")
    return choice or "openblas"


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _too_late_message() -> str:
    return (
        "dfnet4: mlx.core was imported before dfnet4, so MLX keeps the reference BLAS bundled "
        "with mlx-cpu (matmuls 10-40x slower). Import dfnet4 before mlx, or run with "
        f"LD_PRELOAD={shim_path()}; set {ENV_CHOICE}=reference to keep the reference BLAS "
        "without this warning.")


def _dlopen_global(path: Path) -> ctypes.CDLL:
    return ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL | os.RTLD_NOW)


def load() -> str:
    """Load the shim into the global symbol scope unless that is impossible or unwanted.
    Returns the status (see `_status`); never raises except for a bad DFNET4_BLAS value."""
    global _status, _reason, _handle
    if _status is not None:
        return _status
    path = shim_path()
    requested = _requested()
    if sys.platform != "linux":
        _status, _reason = "unsupported", f"no shim on {sys.platform}: MLX uses its own BLAS there"
    elif _shim_in_global_scope():
        _status, _reason = "preloaded", "the shim was already loaded (LD_PRELOAD?)"
    elif requested == "reference":
        _status, _reason = "disabled", f"{ENV_CHOICE}=reference"
    elif "mlx.core" in sys.modules:
        _status, _reason = "too-late", "mlx.core was imported before dfnet4"
        _warn_once(_too_late_message())
    elif not path.is_file():
        _status, _reason = "unavailable", f"{path.name} is not built"
    else:
        try:
            _handle = _dlopen_global(path)
            _status, _reason = "loaded", ""
        except OSError:
            # The RUNPATH names site-packages/scipy_openblas32/lib; when the package lives
            # elsewhere its own import loads libscipy_openblas.so, which then satisfies the shim.
            try:
                import scipy_openblas32  # noqa: F401

                _handle = _dlopen_global(path)
                _status, _reason = "loaded", ""
            except (ImportError, OSError) as exc:
                _status, _reason = "unavailable", f"cannot load {path.name}: {exc}"
                _warn_once(f"dfnet4: MLX keeps its slow reference BLAS: {_reason}. "
                           "Install scipy-openblas32 (a dependency of dfnet4 on Linux).")
    if _status in ("loaded", "preloaded") and "OPENBLAS_NUM_THREADS" not in os.environ:
        set_threads(DEFAULT_THREADS)
    return _status


def status() -> str:
    """The outcome of load() (loading now if `import dfnet4` has not run it)."""
    return load()


def ensure_for_entrypoint() -> None:
    """First call of every console script's main(): if mlx.core was loaded without the shim
    (e.g. by a sitecustomize), re-execute the same command with the shim in LD_PRELOAD.
    A second re-execution never happens (ENV_REEXEC guards it); it then only warns."""
    if load() != "too-late":
        return
    if os.environ.get(ENV_REEXEC) or not shim_path().is_file():
        _warn_once(_too_late_message())
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (str(shim_path()), env.get("LD_PRELOAD")) if p)
    env[ENV_REEXEC] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _classify(library: str | None) -> str:
    if library is None:
        return "unknown"
    name = os.path.basename(library)
    if name == SHIM_FILE:
        return "openblas"  # the shim forwards every call to scipy-openblas32
    if "mlx_cpu.libs" in library or name.startswith("libblas"):
        return "reference"
    if "openblas" in name.lower():
        return "openblas"
    return "other"


def _matmul_gflops(size: int, dtype_name: str = "float32", repeats: int = 3) -> float:
    import mlx.core as mx

    dtype = getattr(mx, dtype_name)
    a = mx.random.normal((size, size), key=mx.random.key(0)).astype(dtype)
    b = mx.random.normal((size, size), key=mx.random.key(1)).astype(dtype)
    with mx.stream(mx.cpu):
        mx.eval(a @ b)  # warm-up: allocation, OpenBLAS thread start
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            mx.eval(a @ b)
            best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def _openblas_details() -> dict:
    if not _shim_in_global_scope():
        return {}
    process = ctypes.CDLL(None)
    config = getattr(process, _MARKER)
    config.restype = ctypes.c_char_p
    return {"openblas_config": config().decode(),
            "openblas_threads": int(process.dfnet4_blas_shim_openblas_threads()),
            "split_threads": int(process.dfnet4_blas_shim_split_threads())}


def split_counts() -> dict:
    """{"products": how many products the shim has split over dfnet4's threads in this process,
    "helper_blocks": how many of their blocks a helper thread (not the caller) ran}; zeros without
    the shim. Large float32 products are split while OpenBLAS runs one thread (docs/blas.md)."""
    if not _shim_in_global_scope():
        return {"products": 0, "helper_blocks": 0}
    process = ctypes.CDLL(None)
    counts = {}
    for key, name in (("products", "dfnet4_blas_shim_split_products"),
                      ("helper_blocks", "dfnet4_blas_shim_helper_blocks")):
        fn = getattr(process, name)
        fn.restype = ctypes.c_long
        counts[key] = int(fn())
    return counts


def set_threads(threads: int) -> None:
    """Set how many threads OpenBLAS uses for MLX's matmuls (default: OPENBLAS_NUM_THREADS when
    set, else DEFAULT_THREADS). More help large products on an idle many-core machine."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"set_threads: threads must be an int >= 1, got {threads!r}")
    if not _shim_in_global_scope():
        raise RuntimeError(
            f"set_threads: MLX is not using dfnet4's OpenBLAS shim (status {load()!r}: {_reason})")
    ctypes.CDLL(None).dfnet4_blas_shim_set_openblas_threads(ctypes.c_int(threads))


def report(measure: bool = True, size: int = 512) -> dict:
    """Which BLAS MLX's CPU matmuls run on in this process, measured:
    - "blas": "openblas" | "reference" | "accelerate" | "other" | "unknown", from the library
      libmlx's `cblas_sgemm` import is bound to (read from its GOT; "library" is that path);
    - "shim": load()'s status and "shim_reason";
    - "matmul_gflops": float32 size^3 CPU matmul speed, best of 3 (when `measure`);
    - "summary": one line for log headers and benchmark tables.
    Imports mlx.core (after load(), so calling this never prevents the shim)."""
    shim = load()
    import mlx.core as mx

    with mx.stream(mx.cpu):  # make sure libmlx has bound its BLAS imports
        mx.eval(mx.ones((2, 2)) @ mx.ones((2, 2)))
    info: dict = {"platform": sys.platform, "shim": shim, "shim_reason": _reason,
                  "shim_path": str(shim_path()), "library": None, "blas": "unknown"}
    if sys.platform == "linux":
        from . import _blas_probe

        target = _blas_probe.resolved_target("/libmlx.so", "cblas_sgemm")
        if target is not None and target["bound"]:
            info["library"] = target["library"]
            info["blas"] = _classify(target["library"])
    elif sys.platform == "darwin":
        info["blas"] = "accelerate"  # MLX's macOS build links Accelerate; not probed
    if info["library"] and os.path.basename(info["library"]) == SHIM_FILE:
        info.update(_openblas_details())
    if measure:
        info["matmul_size"] = size
        info["matmul_gflops"] = round(_matmul_gflops(size), 1)
    info["summary"] = _summary(info)
    return info


def _summary(info: dict) -> str:
    names = {"openblas": "OpenBLAS", "reference": "reference BLAS (netlib, bundled with mlx-cpu)",
             "accelerate": "Accelerate", "other": "other BLAS", "unknown": "unknown BLAS"}
    text = f"MLX BLAS: {names[info['blas']]}"
    if info.get("openblas_config"):
        threads, split = info["openblas_threads"], info["split_threads"]
        text += f" [{info['openblas_config']}; {threads} thread{'s' * (threads != 1)}"
        if split > 1:
            text += f", large products split over {split} dfnet4 threads"
        text += "; dfnet4 shim]"
    elif info["library"] and info["blas"] != "reference":
        text += f" [{info['library']}]"
    if info["shim"] not in ("loaded", "preloaded"):
        text += f" (shim {info['shim']}: {info['shim_reason']})"
    if "matmul_gflops" in info:
        n = info["matmul_size"]
        text += f"; sgemm {n}x{n}x{n}: {info['matmul_gflops']:.1f} GFLOP/s"
    return text
