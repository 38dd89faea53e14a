"""metal/causal_conv.metal, compiled as C++ against the Metal emulator and run with eval_gpu's
launch plan, against the CPU primitive (docs/metal-emulation.md)."""

from __future__ import annotations

import re
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import metal_emulator
from causal_conv_cases import NAMES, cotangents, make_inputs, vjp
from test_selective_scan_support import assert_close

from dfnet4 import ops

emu = metal_emulator.load().causal_conv

METAL_SOURCE = Path(__file__).resolve().parents[1] / "metal" / "causal_conv.metal"


def _np(inputs, name):
    return None if inputs[name] is None else np.array(inputs[name])


# Small grids (the emulator runs one OS thread per GPU thread): one channel, a partial threadgroup,
# more than one threadgroup of 256 channels; time shorter than the window, one chunk and across
# chunks (the backward's halo); each K on the Mamba path and the extremes; window and bias on and
# off; both activations; every scheduling order.
CASES = [
    # batch, time, channels, K, window, bias, activation, order
    (2, 70, 40, 4, True, True, "silu", "shuffled"),
    (1, 2, 33, 4, True, False, "silu", "reverse"),
    (2, 130, 5, 2, False, True, None, "forward"),
    (1, 1, 1, 1, False, False, "silu", "shuffled"),
    (1, 65, 3, 8, True, True, None, "reverse"),
    (1, 3, 300, 3, False, False, "silu", "shuffled"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}-t{c[1]}-c{c[2]}-k{c[3]}-{c[7]}")
def test_emulated_metal_matches_cpu_primitive(case):
    batch, time, channels, width, window, bias, activation, order = case
    inputs = make_inputs(batch, time, channels, width, bias=bias, window=window, seed=time + channels)
    cots = cotangents(inputs)
    (y, new_window), grads = vjp(ops.causal_conv1d, inputs, activation, cots)

    silu = activation == "silu"
    arrays = [_np(inputs, k) for k in NAMES]
    e_y, e_window = emu.forward(*arrays, silu, order=order, seed=1)
    # Same kernel bodies, compiled for the CPU with vector FMA and a polynomial exp vs. as plain
    # scalar C++ with the library exp here: equal up to a few float32 roundings of K + 1 terms.
    assert_close(e_y, y, "y", rtol=2e-6, atol_scale=2e-6)
    assert_close(e_window, new_window, "new_window", rtol=0, atol_scale=0)

    dx, dweight, dwindow, dbias = emu.backward(
        *arrays, np.array(cots[0]), np.array(cots[1]), silu, order=order, seed=2
    )
    emu_grads = {"x": dx, "weight": dweight, "window": dwindow, "bias": dbias}
    for name in NAMES:
        if inputs[name] is None:
            assert emu_grads[name] is None, name
            continue
        # weight and bias: the same per-(batch, chunk) partials folded in the same order.
        tol = 1e-5 if name in ("weight", "bias") else 2e-6
        assert_close(emu_grads[name], grads[name], f"d{name}", rtol=tol, atol_scale=tol)


def test_every_launch_plan_kernel_name_is_instantiated_in_the_metal_source():
    source = METAL_SOURCE.read_text()
    widths = {int(k) for k in re.findall(r"^DFNET4_CONV_INSTANTIATE\((\d+)\)", source, re.M)}
    assert widths == set(range(1, emu.MAX_WIDTH + 1))
    macro = source[source.index("#define DFNET4_CONV_INSTANTIATE") :]
    for kind in ("fwd", "bwd"):
        prefix = re.search(rf'host_name\("(dfnet4_causal_conv_{kind}_f32_k)" #K\)', macro).group(1)
        for k in range(1, emu.MAX_WIDTH + 1):
            assert {"fwd": emu.forward_kernel, "bwd": emu.backward_kernel}[kind](k) == f"{prefix}{k}"
    assert "[[kernel]] void dfnet4_causal_conv_sum_f32(" in source


def test_bad_width_is_refused():
    with pytest.raises(ValueError, match="width"):
        emu.forward(np.zeros((1, 2, 3), np.float32), np.zeros((9, 3), np.float32), None, None, True)
