"""What the numbers were measured on: machine, OS, MLX, device, threads, BLAS.

Every result file carries this record, because CPU timings mean little without it (on Linux the
mlx-cpu wheel links a reference BLAS that is ~10x slower than an optimised one).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import mlx.core as mx

from dfnet4 import _blas, cpu_streams


ENV_VARS = ("MLX_DISABLE_COMPILE", "DFNET4_NUM_THREADS", "DFNET4_BLAS", "DFNET4_BLAS_SPLIT",
            "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "LD_PRELOAD")


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo (Linux) or sysctl (macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS supports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def kernel_threads() -> int:
    """Worker threads the dfnet4 kernels use (csrc/parallel.h: DFNET4_NUM_THREADS, else all cores)."""
    return cpu_streams.worker_threads()


def loaded_blas_libraries() -> list[str]:
    """Shared libraries with BLAS/LAPACK in their name mapped into this process (Linux only)."""
    libs: set[str] = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.strip() else ""
                name = os.path.basename(path).lower()
                if path.startswith("/") and ("blas" in name or "lapack" in name):
                    libs.add(path)
    except OSError:
        pass
    return sorted(libs)


def blas_report(measure: bool = True) -> dict | str:
    """dfnet4._blas's own report: it reads which library libmlx's cblas_sgemm is bound to, and
    measures an sgemm."""
    try:
        value = _blas.report(measure=measure)
    except Exception as exc:  # a broken report must not lose the benchmark
        return f"dfnet4._blas.report() failed: {exc!r}"
    return value if isinstance(value, (dict, str)) else repr(value)


def sgemm_gflops(n: int = 512, repeats: int = 3) -> float:
    """Measured float32 n x n matmul throughput of MLX on the default device, in GFLOP/s."""
    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a, b, a @ b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mx.eval(a @ b)
        mx.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def extension_info() -> dict:
    """Whether the fused kernels are importable, and the extension's own build report."""
    from dfnet4 import _extension

    try:
        ext = _extension.load()
    except ImportError as exc:
        return {"available": False, "reason": str(exc)}
    info = {"available": True}
    build_info = getattr(ext, "build_info", None)
    if build_info is not None:
        info["build_info"] = {k: v for k, v in dict(build_info()).items()}
    return info


def describe(measure_blas: bool = True) -> dict:
    """The full record written into every result file."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    libs = loaded_blas_libraries()
    record = {
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_usable": usable_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "mlx_version": mx.__version__,
        "device": str(mx.default_device()),
        "dfnet4_kernel_threads": kernel_threads(),
        "mlx_cpu_intra_op_threads": 1,  # MLX's CPU backend runs each non-BLAS op on one thread
        "load_average_at_start": load,
        "blas": {
            "dfnet4._blas": blas_report(measure_blas),
            # libraries shipped inside the mlx wheels (what libmlx links), and any other BLAS in the
            # process (e.g. numpy's OpenBLAS, which MLX does not use unless preloaded over its own)
            "mlx_bundled_libraries": [p for p in libs if "mlx" in p],
            "other_libraries_in_process": [p for p in libs if "mlx" not in p],
            "LD_PRELOAD": os.environ.get("LD_PRELOAD", ""),
        },
        "extension": extension_info(),
        # settings that change what runs (MLX_DISABLE_COMPILE would make "compiled" untrue)
        "environment": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if measure_blas and not isinstance(record["blas"]["dfnet4._blas"], dict):
        record["blas"]["mlx_sgemm_512_gflops"] = round(sgemm_gflops(), 2)  # no report: measure here
    return record


def _loads(load: list | None) -> str:
    return "unknown" if load is None else ", ".join(f"{x:.2f}" for x in load)


def summary_lines(record: dict) -> list[str]:
    """A few human-readable lines for the markdown header."""
    blas = record["blas"]
    blas_bits = []
    report = blas.get("dfnet4._blas")
    if isinstance(report, dict):
        blas_bits.append(report.get("summary", str(report)))
    elif report is not None:
        blas_bits.append(f"dfnet4._blas: {report}")
    bundled = [os.path.basename(p) for p in blas.get("mlx_bundled_libraries", [])]
    if bundled and not isinstance(report, dict):  # the report already says what sgemm is bound to
        blas_bits.append("bundled with mlx and loaded: " + ", ".join(bundled))
    if blas.get("LD_PRELOAD"):
        blas_bits.append(f"LD_PRELOAD={blas['LD_PRELOAD']}")
    if "mlx_sgemm_512_gflops" in blas:
        blas_bits.append(f"MLX sgemm 512x512: {blas['mlx_sgemm_512_gflops']} GFLOP/s")
    ext = record["extension"]
    return [
        f"- Machine: {record['cpu_model']}, {record['cpu_cores_usable']} usable cores "
        f"({record['cpu_cores_logical']} logical); {record['os']}",
        f"- MLX {record['mlx_version']}, device {record['device']}, dfnet4 kernel threads "
        f"{record['dfnet4_kernel_threads']} (MLX's other CPU ops: one thread each; matmuls: see BLAS)",
        f"- BLAS: {'; '.join(blas_bits) if blas_bits else 'unknown'}",
        f"- dfnet4 extension: {'available' if ext.get('available') else 'NOT available: ' + ext.get('reason', '')}",
        f"- Load average (1, 5, 15 min) at start: {_loads(record['load_average_at_start'])} on "
        f"{record['cpu_cores_usable']} cores (anything else running shows up in the timings)",
        f"- Measured: {record['time_utc']}",
    ]
