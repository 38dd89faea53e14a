"""metal/spectral_loss.metal, compiled as C++ against the Metal emulator and run with eval_gpu's
launch plan, against the CPU primitive (docs/metal-emulation.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import metal_emulator
import pytest
from spectral_loss_cases import GAMMA, cotangents, make_spectra, vjp
from test_selective_scan_support import assert_close

from dfnet4 import ops

emu = metal_emulator.load().spectral_loss

METAL_SOURCE = Path(__file__).resolve().parents[1] / "metal" / "spectral_loss.metal"

# Pair counts: one value, one partial lane group, exactly one chunk, across chunks; every order.
CASES = [(1, "forward"), (37, "reverse"), (4096, "shuffled"), (9000, "shuffled")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}-{c[1]}")
def test_emulated_metal_matches_cpu_primitive(case):
    pairs, order = case
    pred, target = make_spectra((pairs,), seed=pairs, real_pairs=True)
    cots = cotangents()
    (mag, cplx), (dpred, dtarget) = vjp(ops.compressed_spectral_loss, pred, target, cots)
    p, t = np.array(pred), np.array(target)
    e_mag, e_cplx = emu.forward(p, t, GAMMA, order=order, seed=1)
    # The same chunking, fold order and float math (fast_math.h's log and exp on both); the CPU
    # build contracts multiply-adds into FMAs and sums 16 lanes per vector where the emulated one
    # may not: a few float32 roundings per value (one value alone: |P|^c - |S|^c cancels and
    # magnifies them, measured 3.5e-6 against float64 in test_spectral_loss_op).
    assert_close(e_mag, mag, "mag", rtol=5e-6, atol_scale=0)
    assert_close(e_cplx, cplx, "cplx", rtol=5e-6, atol_scale=0)
    for want_pred, want_target in ((True, True), (True, False), (False, True)):
        e_dp, e_dt = emu.backward(p, t, cots[0].item(), cots[1].item(), want_pred, want_target, GAMMA,
                                  order=order, seed=2)
        assert (e_dp is not None) == want_pred and (e_dt is not None) == want_target
        if want_pred:
            assert_close(e_dp, dpred, "dpred", rtol=2e-5, atol_scale=2e-6)
        if want_target:
            assert_close(e_dt, dtarget, "dtarget", rtol=2e-5, atol_scale=2e-6)


def test_every_launch_plan_kernel_is_in_the_metal_source():
    source = METAL_SOURCE.read_text()
    for name in emu.KERNELS:
        assert f"[[kernel]] void {name}(" in source, name


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(pairs, 2\)"):
        emu.forward(np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32), GAMMA)
