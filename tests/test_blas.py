"""The BLAS shim (docs/blas.md): MLX's results with scipy-openblas32 vs mlx-cpu's reference BLAS,
the DFNET4_BLAS opt-out, the mlx-imported-first warning and re-exec, and platforms without it.

Every scenario runs in a fresh subprocess: which BLAS libmlx uses is fixed when mlx.core is first
imported, so it cannot be switched inside the pytest process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dfnet4
from dfnet4 import _blas

LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux",
                                reason="the BLAS shim exists on Linux only")
PACKAGE_PARENT = Path(dfnet4.__file__).resolve().parent.parent


def run_python(code: str, env: dict | None = None, pythonpath: Path = PACKAGE_PARENT):
    """Run `code` in a fresh interpreter that imports dfnet4 from `pythonpath`."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in (_blas.ENV_CHOICE, _blas.ENV_REEXEC, "LD_PRELOAD",
                             "OPENBLAS_NUM_THREADS", "DFNET4_BLAS_SPLIT", "DFNET4_NUM_THREADS")}
    full_env["PYTHONPATH"] = str(pythonpath)
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


# --- the same products under both BLAS ------------------------------------------------------

# Each case: name -> (dtype, shape of a, shape of b, product written for both numpy and mlx).
# Transposed operands reach cblas_*gemm as CblasTrans with the original leading dimension.
def _t(xp, x):
    return xp.swapaxes(x, -1, -2)


PRODUCTS = {
    "f32_square": ("float32", (64, 64), (64, 64), lambda xp, a, b: a @ b),
    "f32_rect": ("float32", (37, 300), (300, 53), lambda xp, a, b: a @ b),
    "f32_a_transposed": ("float32", (300, 37), (300, 53), lambda xp, a, b: _t(xp, a) @ b),
    "f32_b_transposed": ("float32", (37, 300), (53, 300), lambda xp, a, b: a @ _t(xp, b)),
    "f32_both_transposed": ("float32", (300, 37), (53, 300),
                            lambda xp, a, b: _t(xp, a) @ _t(xp, b)),
    "f32_batched": ("float32", (4, 33, 70), (4, 70, 29), lambda xp, a, b: a @ b),
    "f32_broadcast_batch": ("float32", (3, 1, 16, 40), (1, 5, 40, 12), lambda xp, a, b: a @ b),
    "f32_matrix_vector": ("float32", (50, 200), (200,), lambda xp, a, b: a @ b),
    "f32_large": ("float32", (256, 384), (384, 320), lambda xp, a, b: a @ b),
    "f64_rect": ("float64", (37, 300), (300, 53), lambda xp, a, b: a @ b),
    "f64_a_transposed": ("float64", (300, 37), (300, 53), lambda xp, a, b: _t(xp, a) @ b),
    "f64_batched": ("float64", (4, 33, 70), (4, 70, 29), lambda xp, a, b: a @ b),
    "c64_rect": ("complex64", (37, 120), (120, 53), lambda xp, a, b: a @ b),
    "c64_b_transposed": ("complex64", (37, 120), (53, 120), lambda xp, a, b: a @ _t(xp, b)),
    "c64_batched": ("complex64", (3, 20, 45), (3, 45, 17), lambda xp, a, b: a @ b),
}

# Linear-algebra routines libmlx takes from LAPACK, on matrices with known, well-separated
# spectra (condition number 3) so every compared quantity is well defined and stable.
LAPACK_OPS = {
    "inv": "mx.linalg.inv(spd, stream=cpu)",                       # getrf + getri
    "lu": "mx.linalg.lu(gen, stream=cpu)[2]",                      # getrf
    "cholesky": "mx.linalg.cholesky(spd, stream=cpu)",             # potrf
    "tri_inv": "mx.linalg.tri_inv(mx.linalg.cholesky(spd, stream=cpu), stream=cpu)",  # trtri
    "qr_q": "mx.linalg.qr(gen, stream=cpu)[0]",                    # geqrf + orgqr
    "qr_r": "mx.linalg.qr(gen, stream=cpu)[1]",
    "svd_values": "mx.linalg.svd(gen, compute_uv=False, stream=cpu)",  # gesdd
    "eigh_values": "mx.linalg.eigvalsh(spd, stream=cpu)",          # syevd
    "eig_values": "mx.sort(mx.real(mx.linalg.eigvals(spd, stream=cpu)))",  # geev
    "eigh_complex": "mx.linalg.eigvalsh(herm, stream=cpu)",        # cheevd
    "svd_complex": "mx.linalg.svd(gen.astype(mx.complex64), compute_uv=False, stream=cpu)",
    "inv_f64": "mx.linalg.inv(spd.astype(mx.float64), stream=cpu)",  # dgetrf + dgetri
    "cholesky_f64": "mx.linalg.cholesky(spd.astype(mx.float64), stream=cpu)",  # dpotrf
}

WORKER = """
import json, sys
import numpy as np
import dfnet4                      # loads the shim unless DFNET4_BLAS=reference
import mlx.core as mx
from dfnet4 import _blas_probe
sys.path.insert(0, {tests!r})
from test_blas import PRODUCTS, LAPACK_OPS, make_inputs, lapack_inputs

out = {{}}
for name, (dtype, a_shape, b_shape, product) in PRODUCTS.items():
    a, b = make_inputs(name, dtype, a_shape, b_shape)
    as_mx = lambda x: mx.array(x, dtype=getattr(mx, dtype))  # mx.array(float64) is float32
    out[name] = np.array(product(mx, as_mx(a), as_mx(b)))
    # Small integers: every partial sum is exact, so both BLAS must give the same bits.
    ia, ib = make_inputs(name, dtype, a_shape, b_shape, integers=True)
    out["int_" + name] = np.array(product(mx, as_mx(ia), as_mx(ib)))
ia, ib = make_inputs("conv", "float32", (2, 40, 24), (16, 5, 24), integers=True)
out["int_conv1d"] = np.array(mx.conv1d(mx.array(ia), mx.array(ib), padding=2))
ia, ib = make_inputs("conv2d", "float32", (2, 12, 12, 8), (6, 3, 3, 8), integers=True)
out["int_conv2d"] = np.array(mx.conv2d(mx.array(ia), mx.array(ib), padding=1))
ia, ib = make_inputs("grad", "float32", (30, 40), (40, 20), integers=True)
loss = lambda x: (x @ mx.array(ib)).square().sum()
out["int_matmul_grad"] = np.array(mx.grad(loss)(mx.array(ia)))

cpu = mx.cpu
spd, gen, herm = (mx.array(x) for x in lapack_inputs())
for name, expression in LAPACK_OPS.items():
    out["lapack_" + name] = np.array(eval(expression))

np.savez(sys.argv[1], **out)
report = dfnet4.blas_info(measure=False)
report["bindings"] = _blas_probe.bound_libraries("/libmlx.so")
print(json.dumps(report))
"""


def make_inputs(name: str, dtype: str, a_shape, b_shape, integers: bool = False):
    rng = np.random.default_rng(_stable_seed(name, integers))

    def draw(shape):
        if integers:
            x = rng.integers(-3, 4, size=shape).astype(np.float64)
        else:
            x = rng.standard_normal(shape)
        if dtype == "complex64":
            imag = rng.integers(-3, 4, size=shape) if integers else rng.standard_normal(shape)
            x = x + 1j * imag
        return x.astype(dtype)

    return draw(a_shape), draw(b_shape)


def lapack_inputs(n: int = 24):
    """Float32 test matrices with singular values/eigenvalues spread evenly over [1, 3]."""
    rng = np.random.default_rng(5)
    q1, _ = np.linalg.qr(rng.standard_normal((n, n)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
    spectrum = np.linspace(1.0, 3.0, n)
    spd = q1 @ np.diag(spectrum) @ q1.T
    gen = q1 @ np.diag(spectrum) @ q2.T
    u, _ = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    herm = u @ np.diag(spectrum) @ u.conj().T
    return spd.astype(np.float32), gen.astype(np.float32), herm.astype(np.complex64)


def _stable_seed(*key) -> int:
    """The same seed in every process (the builtin hash of a str is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(repr(key)))


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blas")
    runs = {}
    for label, env in (("openblas", {}), ("reference", {_blas.ENV_CHOICE: "reference"})):
        path = tmp / f"{label}.npz"
        code = (f"import sys; sys.argv = ['worker', {str(path)!r}]\n"
                + WORKER.format(tests=str(Path(__file__).parent)))
        done = run_python(code, env)
        runs[label] = (dict(np.load(path)), json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


@LINUX_ONLY
def test_default_process_uses_openblas_for_every_blas_import(both_runs):
    _, report = both_runs["openblas"]
    assert report["shim"] == "loaded" and report["blas"] == "openblas", report["summary"]
    assert report["openblas_config"].startswith("OpenBLAS")
    bindings = report["bindings"]
    shimmed = sorted(s for s, lib in bindings.items() if lib == report["shim_path"])
    # libmlx's BLAS (cblas gemm family) and LAPACK imports, as `nm -D --undefined-only` lists them.
    assert {"cblas_sgemm", "cblas_dgemm", "cblas_cgemm", "sgetrf_", "dgesdd_",
            "cheevd_"} <= set(shimmed)
    left_on_reference = [s for s, lib in bindings.items() if "mlx_cpu.libs" in lib]
    assert left_on_reference == [], "libmlx still calls the bundled reference BLAS/LAPACK"


@LINUX_ONLY
def test_opt_out_keeps_reference_blas(both_runs):
    _, report = both_runs["reference"]
    assert report["shim"] == "disabled" and report["blas"] == "reference", report["summary"]
    assert "mlx_cpu.libs" in report["bindings"]["cblas_sgemm"]
    assert "reference BLAS" in report["summary"]


@LINUX_ONLY
@pytest.mark.parametrize("name", PRODUCTS)
def test_products_match_reference_blas(both_runs, name):
    fast, reference = both_runs["openblas"][0], both_runs["reference"][0]
    dtype, a_shape, b_shape, product = PRODUCTS[name]
    # Integer-valued operands: exact arithmetic in both, so bit-identical and equal to numpy.
    ia, ib = make_inputs(name, dtype, a_shape, b_shape, integers=True)
    exact = product(np, ia.astype(np.complex128 if "c64" in name else np.float64), ib)
    assert np.array_equal(fast["int_" + name], reference["int_" + name])
    assert np.array_equal(fast["int_" + name], exact.astype(dtype))
    # Random operands: OpenBLAS blocks the k-sum and uses FMA, netlib sums k in order, so the
    # bits differ (max 2.4e-4 on a 1024^3 float32 product with entries ~150). Both are within
    # the classic dot-product rounding bound |fl(a.b) - a.b| <= gamma_k |a|.|b|,
    # gamma_k = k u / (1 - k u) (Higham, Accuracy and Stability, 3.1; sqrt(2) gamma_(k+2) for
    # complex, whose products round twice), so
    # they differ by at most twice that: an element-wise bound, not a guessed tolerance.
    a, b = make_inputs(name, dtype, a_shape, b_shape)
    k = a_shape[-2] if "a_transposed" in name or "both" in name else a_shape[-1]
    u = np.finfo(dtype).eps / 2
    k_eff = k + 2 if dtype == "complex64" else k
    gamma = k_eff * u / (1 - k_eff * u) * (np.sqrt(2) if dtype == "complex64" else 1)
    magnitude = product(np, np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
    exact = product(np, a.astype(np.complex128 if "c64" in name else np.float64), b)
    for label, result in (("openblas", fast[name]), ("reference", reference[name])):
        assert result.dtype == dtype
        assert np.all(np.abs(result - exact) <= gamma * magnitude), f"{label} beyond bound"
    assert np.all(np.abs(fast[name] - reference[name]) <= 2 * gamma * magnitude)
    assert not np.array_equal(fast[name], np.zeros_like(fast[name]))


@LINUX_ONLY
@pytest.mark.parametrize("name", ["int_conv1d", "int_conv2d", "int_matmul_grad"])
def test_gemm_based_ops_bit_identical_on_exact_inputs(both_runs, name):
    fast, reference = both_runs["openblas"][0], both_runs["reference"][0]
    assert np.count_nonzero(reference[name]) > reference[name].size // 2
    assert np.array_equal(fast[name], reference[name])


@LINUX_ONLY
@pytest.mark.parametrize("name", LAPACK_OPS)
def test_lapack_results_match_reference(both_runs, name):
    fast, reference = both_runs["openblas"][0], both_runs["reference"][0]
    key = "lapack_" + name
    # Backward-stable algorithms on condition-3 matrices of order 24: forward error is about
    # n * u * cond = 24 * 6e-8 * 3 = 4e-6 (float32), 8e-15 (float64); 25x that allows for the
    # algorithms' constants. Different blocking makes the bits differ, as for the products.
    tolerance = 2e-13 if name.endswith("f64") else 1e-4
    np.testing.assert_allclose(fast[key], reference[key], rtol=0, atol=tolerance)


# --- loading: order, opt-out, warning, re-exec, no shim -------------------------------------

REPORT = "import dfnet4, json; print(json.dumps(dfnet4.blas_info(measure=False)))"


@LINUX_ONLY
def test_warns_once_when_mlx_core_was_imported_first():
    done = run_python(f"""
        import warnings
        warnings.simplefilter("always")
        import mlx.core
        import dfnet4
        dfnet4._blas.load(); dfnet4._blas.status()
        {REPORT}
    """)
    report = json.loads(done.stdout)
    assert report["shim"] == "too-late" and report["blas"] == "reference"
    assert done.stderr.count("RuntimeWarning") == 1, done.stderr
    assert "Import dfnet4 before mlx" in done.stderr
    assert f"LD_PRELOAD={_blas.shim_path()}" in done.stderr


@LINUX_ONLY
def test_entrypoint_reexecs_with_preload_when_mlx_came_first():
    done = run_python(f"""
        import os, sys
        import mlx.core
        import dfnet4
        print("pid", os.getpid(), "reexec" if os.environ.get("{_blas.ENV_REEXEC}") else "first")
        dfnet4._blas.ensure_for_entrypoint()
        {REPORT}
    """)
    lines = done.stdout.splitlines()
    assert lines[0].endswith("first") and lines[1].endswith("reexec")  # exec keeps the pid
    assert lines[0].split()[1] == lines[1].split()[1]
    report = json.loads(lines[2])
    assert report["shim"] == "preloaded" and report["blas"] == "openblas"


@LINUX_ONLY
def test_entrypoint_never_reexecs_twice():
    done = run_python(f"""
        import mlx.core
        import dfnet4
        dfnet4._blas.ensure_for_entrypoint()
        {REPORT}
    """, env={_blas.ENV_REEXEC: "1"})
    report = json.loads(done.stdout)
    assert report["shim"] == "too-late" and report["blas"] == "reference"
    assert "Import dfnet4 before mlx" in done.stderr


@LINUX_ONLY
def test_entrypoint_keeps_a_good_process():
    done = run_python(f"""
        import dfnet4
        dfnet4._blas.ensure_for_entrypoint()
        {REPORT}
    """)
    assert json.loads(done.stdout)["shim"] == "loaded" and done.stderr == ""


def test_bad_choice_is_rejected():
    with pytest.raises(subprocess.CalledProcessError) as failed:
        subprocess.run([sys.executable, "-c", "import dfnet4"], check=True, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(PACKAGE_PARENT),
                                       _blas.ENV_CHOICE: "mkl"})
    assert "DFNET4_BLAS must be 'openblas' (the default) or 'reference', got 'mkl'" in \
        failed.value.stderr


def test_package_without_the_shim_keeps_mlx_as_is(tmp_path):
    # A dfnet4 built without the shim (macOS, or -DDFNET4_BLAS_SHIM=OFF): a copy of the package
    # minus _blas_shim.so must import silently and leave MLX on its own BLAS.
    shutil.copytree(PACKAGE_PARENT / "dfnet4", tmp_path / "dfnet4",
                    ignore=shutil.ignore_patterns(_blas.SHIM_FILE, "__pycache__"))
    done = run_python(f"""
        import warnings
        warnings.simplefilter("error")
        {REPORT}
    """, pythonpath=tmp_path)
    report = json.loads(done.stdout)
    if sys.platform == "linux":
        assert report["shim"] == "unavailable" and "is not built" in report["shim_reason"]
        assert report["blas"] == "reference"
    else:
        assert report["shim"] == "unsupported"


def test_non_linux_loads_nothing():
    # On macOS (simulated) dfnet4 must not touch the dynamic linker: no shim in the process.
    done = run_python(f"""
        import ctypes, sys
        sys.platform = "darwin"
        import dfnet4
        status = dfnet4._blas.status()
        dfnet4._blas.ensure_for_entrypoint()
        sys.platform = "linux"
        print(status, dfnet4._blas._shim_in_global_scope())
    """)
    assert done.stdout.split() == ["unsupported", "False"]


@LINUX_ONLY
def test_set_threads_changes_openblas_threads():
    done = run_python("""
        import dfnet4
        for threads in (2, 1):
            dfnet4._blas.set_threads(threads)
            print(dfnet4.blas_info(measure=False)["openblas_threads"])
        try:
            dfnet4._blas.set_threads(0)
        except ValueError as exc:
            print(exc)
    """)
    assert done.stdout.splitlines() == ["2", "1", "set_threads: threads must be an int >= 1, got 0"]


@LINUX_ONLY
def test_set_threads_refuses_without_the_shim():
    done = run_python("""
        import dfnet4
        try:
            dfnet4._blas.set_threads(1)
        except RuntimeError as exc:
            print(exc)
    """, env={_blas.ENV_CHOICE: "reference"})
    assert "not using dfnet4's OpenBLAS shim (status 'disabled'" in done.stdout


@LINUX_ONLY
@pytest.mark.parametrize("env, threads", [({}, _blas.DEFAULT_THREADS),
                                          ({"OPENBLAS_NUM_THREADS": "2"}, 2)])
def test_thread_default_unless_openblas_num_threads_is_set(env, threads):
    done = run_python(REPORT, env=env)
    assert json.loads(done.stdout)["openblas_threads"] == threads


# --- large products split across dfnet4's threads (csrc/blas_shim/split_gemm.h) -------------

# Big enough to be split (>= 32 MFLOP, one side >= 128): by rows (m >= n) and by columns (n > m),
# every transpose, float32 (the one split type: see cblas_forward.cpp), a batch (one call per
# matrix), and 4097 rows, which at 32 threads cut into 64 blocks (a ceil-sized block would leave a
# 2-row remainder, which OpenBLAS computes by another path and rounds differently).
SPLIT_PRODUCTS = {
    "f32_rows": ("float32", (4000, 256), (256, 512), lambda xp, a, b: a @ b),
    "f32_rows_a_transposed": ("float32", (256, 4000), (256, 384), lambda xp, a, b: _t(xp, a) @ b),
    "f32_columns": ("float32", (96, 300), (300, 3000), lambda xp, a, b: a @ b),
    "f32_columns_b_transposed": ("float32", (96, 300), (3000, 300), lambda xp, a, b: a @ _t(xp, b)),
    "f32_both_transposed": ("float32", (500, 1100), (700, 500), lambda xp, a, b: _t(xp, a) @ _t(xp, b)),
    "f32_batched": ("float32", (3, 1000, 200), (3, 200, 300), lambda xp, a, b: a @ b),
    "f32_uneven_rows": ("float32", (4097, 2048), (2048, 64), lambda xp, a, b: a @ b),
}

SPLIT_WORKER = """
import sys
import numpy as np
import dfnet4
import mlx.core as mx
sys.path.insert(0, {tests!r})
from test_blas import SPLIT_PRODUCTS, make_inputs
before = dfnet4._blas.split_counts()
out = {{}}
for name, (dtype, a_shape, b_shape, fn) in SPLIT_PRODUCTS.items():
    a, b = make_inputs(name, dtype, a_shape, b_shape)
    out[name] = np.array(fn(mx, mx.array(a), mx.array(b)))
small = mx.ones((64, 64)) @ mx.ones((64, 64))
mx.eval(small)
np.savez(sys.argv[1], **out)
after = dfnet4._blas.split_counts()
print(after["products"] - before["products"], after["helper_blocks"] - before["helper_blocks"],
      dfnet4.blas_info(measure=False)["split_threads"])
"""


def _split_run(tmp_path, label: str, env: dict):
    path = tmp_path / f"{label}.npz"
    code = f"import sys; sys.argv = ['worker', {str(path)!r}]\n" + SPLIT_WORKER.format(tests=str(Path(__file__).parent))
    split, helper_blocks, threads = map(int, run_python(code, env).stdout.split())
    return dict(np.load(path)), split, helper_blocks, threads


@LINUX_ONLY
def test_large_products_split_over_threads_give_the_one_thread_bits(tmp_path):
    one, split_one, _, threads_one = _split_run(tmp_path, "one", {"DFNET4_NUM_THREADS": "1"})
    assert (threads_one, split_one) == (1, 0)  # one thread: nothing split
    for threads in (3, 32):
        many, split, helper_blocks, split_threads = _split_run(tmp_path, f"t{threads}",
                                                              {"DFNET4_NUM_THREADS": str(threads)})
        # every listed product split (the batch: one call per matrix), the 64^3 one not; and the
        # helper threads ran blocks (the caller alone would give the same bits)
        assert split_threads == threads and split == len(SPLIT_PRODUCTS) + 2 and helper_blocks > 0
        for name, (dtype, a_shape, b_shape, fn) in SPLIT_PRODUCTS.items():
            # OpenBLAS computes each row/column of C the same way in any block of the split's
            # size: bit-identical to the unsplit product
            np.testing.assert_array_equal(many[name], one[name], err_msg=f"{name} at {threads} threads")
            a, b = make_inputs(name, dtype, a_shape, b_shape)
            exact = fn(np, a.astype(np.float64), b.astype(np.float64))
            inner = fn(np, np.ones(a_shape), np.ones(b_shape)).flat[0]  # k: each entry sums k products
            scale = fn(np, np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
            assert np.all(np.abs(many[name] - exact) <= inner * np.finfo(np.float32).eps * scale), name


# cblas_sgemm called directly (MLX only uses row-major): both storage orders, every transpose
# pair, padded leading dimensions (NaN padding in A and B, a sentinel in C's), alpha and beta, rows
# and columns split; the split (DFNET4_BLAS_SPLIT unset) against the same call unsplit ("0").
DIRECT_SGEMM = """
import ctypes, itertools, os
import numpy as np
import dfnet4
from ctypes import c_float, c_int, c_void_p
ROW, COL, NO, TR = 101, 102, 111, 112
sgemm = ctypes.CDLL(None).cblas_sgemm
sgemm.argtypes = [c_int] * 6 + [c_float, c_void_p, c_int, c_void_p, c_int, c_float, c_void_p, c_int]
rng = np.random.default_rng(3)

def store(x, order, pad):
    r, c = x.shape
    if order == ROW:
        s = np.full((r, c + pad), np.nan, np.float32); s[:, :c] = x; return s, c + pad
    s = np.full((c, r + pad), np.nan, np.float32); s[:, :r] = x.T; return s, r + pad

def load(s, order, r, c):
    return s[:, :c] if order == ROW else s[:, :r].T

bad = []
for order, ta, tb, (m, n, k) in itertools.product((ROW, COL), (NO, TR), (NO, TR), ((3000, 96, 256), (96, 3000, 256))):
    op_a, op_b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    a, lda = store((op_a if ta == NO else op_a.T).astype(np.float32), order, 3)
    b, ldb = store((op_b if tb == NO else op_b.T).astype(np.float32), order, 5)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    runs = []
    for split in ("0", "1"):
        os.environ["DFNET4_BLAS_SPLIT"] = split
        c, ldc = store(c0, order, 7)
        c[np.isnan(c)] = 1234.5  # C's padding: must stay as it is
        before = dfnet4._blas.split_counts()["products"]
        sgemm(order, ta, tb, m, n, k, 1.5, a.ctypes.data, lda, b.ctypes.data, ldb, 0.5, c.ctypes.data, ldc)
        runs.append((c, dfnet4._blas.split_counts()["products"] - before))
    (c_whole, n_whole), (c_split, n_split) = runs
    result = load(c_split, order, m, n)
    a64, b64 = (x.astype(np.float32).astype(np.float64) for x in (op_a, op_b))
    exact = 1.5 * a64 @ b64 + 0.5 * c0
    bound = (k + 2) * np.finfo(np.float32).eps * (1.5 * np.abs(a64) @ np.abs(b64) + 0.5 * np.abs(c0))
    pad_ok = np.count_nonzero(c_split == 1234.5) == c_split.size - m * n
    if not (n_whole == 0 and n_split == 1 and np.array_equal(c_split, c_whole) and pad_ok
            and np.all(np.abs(result - exact) <= bound)):
        bad.append((order, ta, tb, m, n, n_whole, n_split))
print(bad)
"""


@LINUX_ONLY
def test_direct_sgemm_split_for_every_order_and_transpose():
    done = run_python(DIRECT_SGEMM, env={"DFNET4_NUM_THREADS": "3"})
    assert done.stdout.strip() == "[]"


@LINUX_ONLY
@pytest.mark.parametrize("env", [{"OPENBLAS_NUM_THREADS": "2"}, {"DFNET4_BLAS_SPLIT": "0"}],
                         ids=["openblas-threads-itself", "split-off"])
def test_products_are_not_split(env):
    done = run_python(SPLIT_WORKER.format(tests=str(Path(__file__).parent)).replace(
        "np.savez(sys.argv[1], **out)", ""), env={"DFNET4_NUM_THREADS": "2", **env})
    assert done.stdout.split() == ["0", "0", "0"]

