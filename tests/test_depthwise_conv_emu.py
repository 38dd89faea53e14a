"""metal/depthwise_conv.metal, compiled as C++ against the Metal emulator and run with eval_gpu's
launch plan, against the CPU primitive (docs/metal-emulation.md)."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import metal_emulator
import pytest
from test_selective_scan_support import assert_close

from dfnet4 import ops
from dfnet4.ops.depthwise_conv import output_size

emu = metal_emulator.load().depthwise_conv

METAL_SOURCE = Path(__file__).resolve().parents[1] / "metal" / "depthwise_conv.metal"

# Small grids (one OS thread per GPU thread): one channel, a partial threadgroup, more than one
# threadgroup of 256 channels; rows within one 8-row block and across blocks; DFN3's geometry and
# others; every scheduling order.
CASES = [
    # rows, big freqs, channels, K, stride, pad, order
    (10, 12, 40, 3, 2, 1, "shuffled"),
    (3, 8, 33, 3, 1, 1, "reverse"),
    (17, 9, 1, 5, 2, 2, "forward"),
    (2, 6, 300, 4, 3, 0, "shuffled"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"r{c[0]}-f{c[1]}-c{c[2]}-k{c[3]}-s{c[4]}-{c[6]}")
def test_emulated_metal_matches_cpu_primitive(case):
    rows, big, channels, k, stride, pad, order = case
    small = output_size(big, k, stride, pad)
    rng = np.random.default_rng(rows + channels)
    x = rng.standard_normal((rows, big, channels)).astype(np.float32)
    w = rng.standard_normal((k, channels)).astype(np.float32)
    g = rng.standard_normal((rows, small, channels)).astype(np.float32)
    op = big - output_size(small, k, stride, pad, transposed=True)  # the transposed map's output padding
    xm, wm, gm = mx.array(x), mx.array(w), mx.array(g)
    # The same kernel bodies on the same values, in the same order: exact up to FMA contraction,
    # which the CPU build does and the emulated one may not (a few float32 roundings).
    tol = dict(rtol=1e-6, atol_scale=1e-6)
    y = ops.depthwise_conv(xm, wm, stride, pad)
    assert_close(emu.gather(x, w, small, stride, pad, order=order, seed=1), y, "gather", **tol)
    yt = ops.depthwise_conv(gm, wm, stride, pad, transposed=True, output_padding=op)
    assert_close(emu.scatter(g, w, big, stride, pad, order=order, seed=2), yt, "scatter", **tol)
    _, (dw,) = mx.vjp(lambda b: ops.depthwise_conv(xm, b, stride, pad), [wm], [gm])
    assert_close(emu.weight_grad(x, g, w, stride, pad, order=order, seed=3), dw, "dweight", rtol=1e-5, atol_scale=1e-5)


def test_every_launch_plan_kernel_is_in_the_metal_source():
    source = METAL_SOURCE.read_text()
    for name in emu.KERNELS:
        assert f"[[kernel]] void {name}(" in source, name


def test_bad_width_is_refused():
    with pytest.raises(ValueError, match="K <= 8"):
        emu.gather(np.zeros((1, 9, 2), np.float32), np.zeros((9, 2), np.float32), 1, 1, 0)
