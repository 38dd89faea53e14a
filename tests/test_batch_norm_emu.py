"""metal/batch_norm.metal, compiled as C++ against the Metal emulator and run with eval_gpu's launch
plan, against the CPU primitive (docs/metal-emulation.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import metal_emulator
import pytest
from batch_norm_cases import EPS, NAMES, cotangents, make_inputs, vjp
from test_selective_scan_support import assert_close

from dfnet4 import ops

emu = metal_emulator.load().batch_norm

METAL_SOURCE = Path(__file__).resolve().parents[1] / "metal" / "batch_norm.metal"

# Small grids (the emulator runs one OS thread per GPU thread): one channel, a partial threadgroup,
# more than one threadgroup of 256 channels; rows within one 256-row block, exactly one, and across
# blocks; both activations; every scheduling order.
CASES = [
    # rows, channels, relu, order
    (300, 40, True, "shuffled"),
    (2, 33, False, "reverse"),
    (256, 5, True, "forward"),
    (513, 1, False, "shuffled"),
    (3, 300, True, "reverse"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"r{c[0]}-c{c[1]}-relu{c[2]}-{c[3]}")
def test_emulated_metal_matches_cpu_primitive(case):
    rows, channels, relu, order = case
    inputs = make_inputs((rows, channels), seed=rows + channels)
    cots = cotangents(inputs)
    (y, mean, var), grads = vjp(ops.batch_norm, inputs, relu, cots)
    arrays = [np.array(inputs[k]) for k in NAMES]
    e_y, e_mean, e_var = emu.forward(*arrays, EPS, relu, order=order, seed=1)
    # The same kernel bodies and the same fold order; the CPU build contracts multiply-adds into
    # FMAs where the emulated one may not: a float32 rounding or two.
    assert_close(e_mean, mean, "mean", rtol=1e-6, atol_scale=1e-6)
    assert_close(e_var, var, "var", rtol=1e-6, atol_scale=1e-6)
    assert_close(e_y, y, "y", rtol=2e-6, atol_scale=2e-6)
    dx, dweight, dbias = emu.backward(*arrays, np.array(mean), np.array(var), *(np.array(c) for c in cots),
                                      EPS, relu, order=order, seed=2)
    for name, got in zip(NAMES, (dx, dweight, dbias)):
        assert_close(got, grads[name], f"d{name}", rtol=2e-6, atol_scale=2e-6)


def test_every_launch_plan_kernel_is_in_the_metal_source():
    source = METAL_SOURCE.read_text()
    for name in emu.KERNELS:
        assert f"[[kernel]] void {name}(" in source, name


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        emu.forward(np.zeros((2, 3, 4), np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32), EPS, False)
