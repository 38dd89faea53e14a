"""metal/rms_norm.metal, compiled as C++ against the Metal emulator and run with eval_gpu's launch
plan, against the CPU primitive (docs/metal-emulation.md)."""

from __future__ import annotations

from pathlib import Path

import metal_emulator
import numpy as np
import pytest
from rms_norm_cases import EPS, NAMES, cotangent, make_inputs, vjp
from test_selective_scan_support import assert_close

from dfnet4 import ops

emu = metal_emulator.load().rms_norm

METAL_SOURCE = Path(__file__).resolve().parents[1] / "metal" / "rms_norm.metal"

# Small grids (the emulator runs one OS thread per GPU thread): one row, rows within one 32-row
# block, exactly one, across blocks and a partial last threadgroup of 8 SIMD groups; one channel,
# fewer channels than the 32 lanes, a multiple of them, more and not a multiple (lanes with one
# chunk more than others), more than one fold threadgroup of 256 channels; every scheduling order.
CASES = [
    # rows, channels, order
    (1, 1, "forward"),
    (3, 5, "reverse"),
    (32, 64, "shuffled"),
    (33, 37, "forward"),
    (70, 100, "shuffled"),
    (2, 300, "reverse"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"r{c[0]}-c{c[1]}-{c[2]}")
def test_emulated_metal_matches_cpu_primitive(case):
    rows, channels, order = case
    inputs = make_inputs((rows, channels), seed=rows + channels)
    cot = cotangent(inputs)
    y, grads = vjp(ops.rms_norm, inputs, cot)
    x, w = (np.array(inputs[k]) for k in NAMES)
    # The same kernel bodies; the row sums add in another order (32 lanes and simd_sum on the GPU,
    # 16 lanes and a shuffle tree on the CPU) and the CPU build contracts multiply-adds into FMAs:
    # a few float32 roundings of each row's sums, so a few ulps of every value.
    assert_close(emu.forward(x, w, EPS, order=order, seed=1), y, "y", rtol=2e-6, atol_scale=2e-6)
    dx, dweight = emu.backward(x, w, np.array(cot), EPS, order=order, seed=2)
    assert_close(dx, grads["x"], "dx", rtol=2e-6, atol_scale=2e-6)
    assert_close(dweight, grads["weight"], "dweight", rtol=2e-6, atol_scale=2e-6)


def test_every_launch_plan_kernel_is_in_the_metal_source():
    source = METAL_SOURCE.read_text()
    for name in emu.KERNELS:
        assert f"[[kernel]] void {name}(" in source, name


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        emu.forward(np.zeros((2, 3, 4), np.float32), np.zeros(4, np.float32), EPS)
