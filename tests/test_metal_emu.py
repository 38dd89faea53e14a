"""The Metal emulator (metal/emu) on its own test kernels (metal/emu/selftest/emu_selftest.metal).

Every expected value is computed here in numpy from Metal's documented semantics, independently of
the emulator. Inputs are small integers stored as float32, so sums are exact in any order and the
comparisons are exact (no tolerance needed) except for the libm math test.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import metal_emulator
import numpy as np
import pytest

emu = metal_emulator.load()
st = emu.selftest

ORDERS = ["forward", "reverse", "shuffled"]
SIMD = 32


def _ints(n, seed, lo=-8, hi=8):
    return np.random.default_rng(seed).integers(lo, hi + 1, n).astype(np.float32)


# --- threadgroup reduction: barriers ------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("group_size", [32, 256])
def test_reduction_with_barriers_is_correct_in_every_order(order, group_size):
    groups = 3
    x = _ints(groups * group_size - 5, seed=group_size)  # last group is zero-padded by the kernel
    out = np.array(st.tg_reduce(x, groups, group_size, 0, order, 7, [group_size * 4]))
    padded = np.concatenate([x, np.zeros(5, np.float32)])
    np.testing.assert_array_equal(out, padded.reshape(groups, group_size).sum(axis=1))


def test_missing_barrier_after_fill_reads_poisoned_memory_under_forward_order():
    # Thread 0 runs first and reads shared[16] before thread 16 has written it: the 0xFF fill is NaN.
    x = _ints(64, seed=1)
    out = np.array(st.tg_reduce(x, 2, 32, 1, "forward", 0, [128]))
    assert np.isnan(out).all()
    # Reverse order happens to write before reading, which is why several orders are needed.
    rev = np.array(st.tg_reduce(x, 2, 32, 1, "reverse", 0, [128]))
    np.testing.assert_array_equal(rev, x.reshape(2, 32).sum(axis=1))


def test_missing_barrier_in_tree_loop_reads_stale_partial_sums():
    x = np.arange(1, 65, dtype=np.float32)  # all positive: a stale read gives a smaller sum
    expect = x.reshape(2, 32).sum(axis=1)
    fwd = np.array(st.tg_reduce(x, 2, 32, 2, "forward", 0, [128]))
    assert np.all(np.isfinite(fwd)) and np.all(fwd < expect)
    shuffled = np.array(st.tg_reduce(x, 2, 32, 2, "shuffled", 3, [128]))
    assert np.any(shuffled != expect)


def test_buggy_results_are_deterministic():
    x = np.arange(1, 65, dtype=np.float32)
    a = st.tg_reduce(x, 2, 32, 2, "shuffled", 11, [128])
    b = st.tg_reduce(x, 2, 32, 2, "shuffled", 11, [128])
    assert a == b


# --- SIMD-group collectives ----------------------------------------------------------------------


def _simd_expected(x, group_size):
    """Per-lane results of emu_simd_ops, from Metal's definitions; NaN where Metal is undefined."""
    n = x.size
    out = np.full((st.SIMD_OPS, n), np.nan, np.float32)
    for g0 in range(0, n, group_size):
        for s0 in range(g0, min(g0 + group_size, n), SIMD):
            v = x[s0 : min(s0 + SIMD, g0 + group_size, n)]
            w = v.size  # lanes that exist (partial last SIMD-group)
            lanes = np.arange(w)
            sl = slice(s0, s0 + w)

            def gather(src, own_if):
                r = np.full(w, np.nan, np.float32)
                keep = own_if
                r[keep] = v[keep]
                ok = ~keep & (src >= 0) & (src < w)
                r[ok] = v[src[ok]]
                return r

            out[0, sl] = v.sum()
            out[1, sl] = v.max()
            out[2, sl] = v.min()
            out[3, sl] = np.cumsum(v)
            out[4, sl] = np.cumsum(v) - v
            out[5, sl] = gather((lanes * 7 + 3) % SIMD, np.zeros(w, bool))
            out[6, sl] = gather(lanes + 1, lanes + 1 >= SIMD)
            out[7, sl] = gather(lanes - 2, lanes - 2 < 0)
            out[8, sl] = gather(lanes ^ 5, np.zeros(w, bool))
            out[9, sl] = v[3] if w > 3 else np.nan
            out[10, sl] = float(np.all(v > -5))
            out[11, sl] = float(np.any(v > 6))
            first = lanes % 3 == 0
            out[12, s0 + lanes[first]] = v[first].sum()
            out[12, s0 + lanes[~first]] = np.cumsum(v[~first])
            out[13, sl] = v.sum()  # sum(2v) - sum(v)
            out[14, sl] = v.max()
            out[15, sl] = v.sum()
            out[16, sl] = np.bitwise_or.reduce((v + 8).astype(np.uint32))
            rot = (lanes + 3) % SIMD  # wraps at 32, not at the partial group's end
            out[17, sl] = gather(rot, np.zeros(w, bool))
            out[18, sl] = v[0]
            out[19, sl] = (lanes == 0).astype(np.float32)
            out[20, sl] = gather(lanes - 1, lanes - 1 < 0)
    return out


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n,group_size", [(64, 64), (100, 40), (77, 96), (33, 33)])
def test_simd_collectives_match_numpy(n, group_size, order):
    x = _ints(n, seed=n + group_size)
    got = np.array(st.simd_ops(x, group_size, order, 5), np.float32).reshape(st.SIMD_OPS, n)
    np.testing.assert_array_equal(got, _simd_expected(x, group_size))


def test_simd_shuffle_from_missing_lane_is_poison_not_zero():
    # 40 threads: the second SIMD-group has 8 lanes; shuffle_down(1) in its lane 7 reads lane 8,
    # which does not exist -> undefined in Metal -> NaN here (a kernel relying on it gets caught).
    x = np.ones(40, np.float32)
    got = np.array(st.simd_ops(x, 40), np.float32).reshape(st.SIMD_OPS, 40)
    assert np.isnan(got[6, 39]) and got[6, 31] == 1.0 and got[6, 38] == 1.0


def test_non_uniform_simd_broadcast_raises():
    with pytest.raises(RuntimeError, match="must be uniform"):
        st.bad_broadcast()


def test_simd_call_outside_a_dispatch_raises():
    with pytest.raises(RuntimeError, match="outside metal_emu::dispatch"):
        st.simd_sum_outside_dispatch(1.0)


# --- divergence and launch errors ----------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_barrier_in_a_branch_raises(order):
    with pytest.raises(RuntimeError, match="barrier divergence.*returned without reaching it"):
        st.divergent(0, 8, order)


def test_different_barriers_in_if_and_else_raise():
    with pytest.raises(RuntimeError, match="different threadgroup_barrier calls"):
        st.divergent(1, 8)


def test_barrier_in_loop_with_thread_dependent_trip_count_raises():
    with pytest.raises(RuntimeError, match="barrier divergence"):
        st.divergent(2, 64, "shuffled")


def test_launch_limits_raise():
    x = np.zeros(2048, np.float32)
    with pytest.raises(RuntimeError, match="at most 1024"):
        st.tg_reduce(x, 1, 2048, 0, "forward", 0, [8192])
    with pytest.raises(RuntimeError, match="zero dimension"):
        st.tg_reduce(x, 0, 32, 0, "forward", 0, [128])
    with pytest.raises(RuntimeError, match="zero dimension"):
        st.positions([4, 1, 1], [0, 1, 1], False)
    with pytest.raises(RuntimeError, match="at most 32768"):
        st.tg_reduce(x, 1, 32, 0, "forward", 0, [16384, 16400])
    with pytest.raises(RuntimeError, match="multiple of 16"):
        st.tg_reduce(x, 1, 32, 0, "forward", 0, [132])


def test_exception_in_a_kernel_propagates_and_the_emulator_recovers():
    x = np.arange(64, dtype=np.float32)
    # variant 3: the harness's kernel lambda throws std::invalid_argument in the last thread of a
    # group while the other threads are parked at a barrier (or not started yet).
    for order in ORDERS:
        with pytest.raises(ValueError, match="variant must be 0, 1 or 2"):
            st.tg_reduce(x, 2, 32, 3, order, 0, [128])
    out = st.tg_reduce(x, 2, 32, 0, "shuffled", 0, [128])
    np.testing.assert_array_equal(out, x.reshape(2, 32).sum(axis=1))


def test_device_buffer_catches_out_of_bounds_and_unwritten_elements():
    n = 40
    np.testing.assert_array_equal(st.write_range(n, 0, n), np.arange(n, dtype=np.float32))
    with pytest.raises(RuntimeError, match="past the end of buffer 'out'"):
        st.write_range(n, 1, n)
    with pytest.raises(RuntimeError, match="before the start of buffer 'out'"):
        st.write_range(n, -1, n)
    with pytest.raises(RuntimeError, match="element 17 of buffer 'out' was never written"):
        st.write_range(n, 0, 17)


def test_write_past_threadgroup_buffer_raises():
    with pytest.raises(RuntimeError, match="wrote past the end of threadgroup buffer 0"):
        st.overflow(32)


# --- positions and scheduling order --------------------------------------------------------------


def _positions_expected(grid, tpg, uniform):
    grid, tpg = np.array(grid), np.array(tpg)
    threads = grid * tpg if uniform else grid
    groups = grid if uniform else -(-grid // tpg)
    rows = []
    for z in range(threads[2]):
        for y in range(threads[1]):
            for xx in range(threads[0]):
                p = np.array([xx, y, z])
                g = p // tpg
                t = p - g * tpg
                size = np.minimum(tpg, threads - g * tpg)  # partial at the edge (dispatch_threads)
                idx = t[0] + size[0] * (t[1] + size[1] * t[2])
                nsimd = -(-int(np.prod(size)) // SIMD)
                rows.append([*p, *g, *t, *size, idx, idx % SIMD, idx // SIMD, nsimd, 1])
    assert np.all(groups * tpg >= threads)
    return np.array(rows, np.int64)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    "grid,tpg,uniform",
    [([5, 3, 2], [4, 2, 1], False), ([70, 1, 1], [32, 1, 1], False), ([2, 2, 1], [3, 5, 3], True)],
)
def test_positions(grid, tpg, uniform, order):
    got = np.array(st.positions(grid, tpg, uniform, order, 9), np.int64).reshape(-1, st.POS_FIELDS)
    np.testing.assert_array_equal(got, _positions_expected(grid, tpg, uniform))


def test_run_order_follows_the_requested_order():
    n = 16
    fwd = np.array(st.run_order(n, "forward"))
    np.testing.assert_array_equal(fwd, np.arange(2 * n))
    rev = np.array(st.run_order(n, "reverse"))
    np.testing.assert_array_equal(rev, np.concatenate([np.arange(n)[::-1], n + np.arange(n)[::-1]]))
    a = np.array(st.run_order(n, "shuffled", 1))
    assert sorted(a[:n]) == list(range(n)) and sorted(a[n:]) == list(range(n, 2 * n))
    assert not np.array_equal(a, fwd) and not np.array_equal(a, rev)
    # Reproducible for a seed; a fresh permutation for another seed and for each barrier round.
    assert st.run_order(n, "shuffled", 1) == list(a)
    assert st.run_order(n, "shuffled", 2) != list(a)
    assert not np.array_equal(a[:n], a[n:] - n)


def test_watchdog_stops_a_thread_that_never_yields():
    # Run in a child process: the watchdog aborts the whole process, with a message.
    code = "import dfnet4._metal_emu as m; m.selftest.spin_wait()"
    env = {**os.environ, "METAL_EMU_WATCHDOG_S": "1"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "without reaching a sync point" in r.stderr


def test_emulator_works_in_a_forked_child():
    # The pool's OS threads do not survive fork(); the child must start its own, and exit cleanly.
    code = """
import os, sys
import numpy as np
import dfnet4._metal_emu as m
x = np.arange(64, dtype=np.float32)
assert m.selftest.tg_reduce(x, 2, 32, 0, "forward", 0, [128]) == [496.0, 1520.0]
pid = os.fork()
if pid == 0:
    ok = m.selftest.tg_reduce(x, 2, 32, 0, "reverse", 0, [128]) == [496.0, 1520.0]
    sys.exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "child 0" in r.stdout


# --- math ------------------------------------------------------------------------------------------


def test_math_matches_numpy():
    x = np.linspace(-3, 3, 37).astype(np.float32)
    got = np.array(st.math(x), np.float32).reshape(st.MATH_OPS, x.size)
    ax = np.abs(x)
    expect = np.stack([
        np.exp(x), np.log(ax + 1), np.tanh(x), np.exp2(x), np.sqrt(ax), 1 / np.sqrt(ax + 1),
        np.clip(x, -1, 1), x * 2 + 1, np.where(x < 0, -x, x),
        np.maximum(x, 0.5) + np.minimum(x, -0.5), x * 2 + 1, x.astype(np.float16).astype(np.float32),
        np.log1p(np.exp(x)) + 1 / (1 + np.exp(-x)),  # dfk::fastmath::softplus + sigmoid (fast_math.h)
        np.maximum(x, 0.25) + ax**2,
    ]).astype(np.float32)
    # libm float32 vs numpy's float32 kernels: both within a few ulp of the true value.
    np.testing.assert_allclose(got, expect, rtol=4e-7 * 8, atol=1e-7)


# --- compile-time honesty: what Metal rejects must not compile here ----------------------------

ROOT = Path(__file__).resolve().parents[1]
CXX = shutil.which("g++") or shutil.which("c++")
KERNEL = """
#include <metal_stdlib>
using namespace metal;
[[kernel]] void k(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  double v = o[i];
  o[i] = float(v);
}
"""
# Every .metal file of the project, plus the emulator's own: each must compile on its own in
# strict mode (no std::, exceptions, allocation, double, ...), as Apple's compiler requires.
METAL_FILES = sorted((ROOT / "metal").glob("*.metal")) + sorted(
    (ROOT / "metal" / "emu" / "selftest").glob("*.metal"))
# A harness-like file: two Metal parts, each closed by emu_end.h, with host code after each.
HARNESS = '''
#include <metal_stdlib>
#include "emu_launch.h"
using namespace metal;
[[kernel]] void a(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = 1.0f; }
#include "emu_end.h"
#include <sstream>
double host_a(std::thread* t) { std::ostringstream s; s << 1.5; return t ? 0.0 : 1.0; }
#include <metal_stdlib>
[[kernel]] void b(device float* o [[buffer(0)]], threadgroup float* t [[threadgroup(0)]],
                  uint i [[thread_position_in_grid]]) { t[i] = simd_sum(o[i]); }
#include "emu_end.h"
double host_b() {
  std::vector<float> v(4);
  metal_emu::dispatch_threads(uint3(4, 1, 1), uint3(4, 1, 1), {},
      [&](const metal_emu::ThreadPos& p, void* const*) { a(v.data(), p.thread_position_in_grid.x); });
  return double(v[0]);
}
'''
CASES = {
    "harness": ("h.cpp", HARNESS, []),
    "double": ("k.metal", KERNEL, []),
    "include_order": ("k.metal", '#include "kernels/defines.h"\n' + KERNEL.replace("double", "float"), []),
    **{f"strict:{p.name}": (p.name, p.read_text(), ["-DMETAL_EMU_STRICT"]) for p in METAL_FILES},
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compiles every case at once (-fsyntax-only, in parallel): name -> (returncode, stderr)."""
    if CXX is None or not (ROOT / "metal" / "emu" / "metal_stdlib").exists():
        pytest.skip("needs a C++ compiler and the source tree (metal/emu)")
    procs = {}
    for name, (fname, src, flags) in CASES.items():
        d = tmp_path_factory.mktemp("compile")
        (d / fname).write_text(src)
        cmd = [CXX, "-std=c++20", "-fsyntax-only", "-x", "c++", *flags,
               f"-I{ROOT / 'metal' / 'emu'}", f"-I{ROOT / 'metal'}", f"-I{ROOT / 'csrc'}",
               str(d / fname)]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
    return {name: (p.wait(), p.stdout.read()) for name, p in procs.items()}


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("strict:")])
def test_metal_file_compiles_in_strict_mode(compiled, name):
    rc, out = compiled[name]
    assert rc == 0, out


def test_harness_with_two_metal_parts_and_host_code_compiles(compiled):
    rc, out = compiled["harness"]
    assert rc == 0, out


def test_double_in_a_kernel_does_not_compile(compiled):
    rc, out = compiled["double"]
    assert rc != 0 and "metal_emu_error_double_is_not_a_Metal_type" in out


def test_kernel_bodies_included_before_the_shim_do_not_compile(compiled):
    rc, out = compiled["include_order"]
    assert rc != 0 and "included before <metal_stdlib>" in out
