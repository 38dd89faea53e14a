"""metal/selective_scan.metal, compiled as C++ against the Metal emulator and run with eval_gpu's
launch plan, against the CPU primitive (docs/metal-emulation.md)."""

from __future__ import annotations

import re
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import metal_emulator
from test_selective_scan_support import ALL_OPTIONS, OPTIONAL, assert_close, make_inputs

from dfnet4 import ops

emu = metal_emulator.load().selective_scan

NAMES = ("u", "delta", "A", "B", "C") + OPTIONAL
METAL_SOURCE = Path(__file__).resolve().parents[1] / "metal" / "selective_scan.metal"


def _np(kwargs, name):
    return np.array(kwargs[name]) if name in kwargs else None


def _cpu_reference(kwargs, softplus, dout, dlast):
    names = [k for k in NAMES if k in kwargs]

    def f(*arrays):
        return ops.selective_scan(
            **dict(zip(names, arrays)), delta_softplus=softplus, return_last_state=True
        )

    outs, grads = mx.vjp(f, [kwargs[k] for k in names], [mx.array(dout), mx.array(dlast)])
    return outs, dict(zip(names, grads))


# Small grids (the emulator runs one OS thread per GPU thread): channels inside one block, exactly
# one block, spilling into a partial block, and several threadgroups of several SIMD-groups; each
# kernel variant (state 16 fixed, < 16, > 16); time within one checkpoint chunk and across several;
# every optional argument on and off; every scheduling order.
CASES = [
    # batch, time, channels, state, options, order
    (2, 37, 40, 4, ALL_OPTIONS, "shuffled"),
    (1, 20, 32, 16, frozenset({"z", "D"}), "reverse"),
    (2, 18, 5, 17, frozenset({"softplus", "h0", "delta_bias"}), "forward"),
    (1, 1, 1, 1, frozenset(), "shuffled"),
    (1, 33, 3, 16, ALL_OPTIONS, "forward"),
    # 10 channel blocks: one full threadgroup of 8 SIMD-groups and a partial one of 2.
    (1, 5, 300, 4, ALL_OPTIONS, "shuffled"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}-t{c[1]}-d{c[2]}-n{c[3]}-{c[5]}")
def test_emulated_metal_matches_cpu_primitive(case):
    batch, time, channels, state, options, order = case
    kwargs, softplus = make_inputs(batch, time, channels, state, options, seed=channels + time)
    rng = np.random.default_rng(3)
    dout = rng.standard_normal((batch, time, channels)).astype(np.float32)
    dlast = rng.standard_normal((batch, channels, state)).astype(np.float32)
    (out, last), grads = _cpu_reference(kwargs, softplus, dout, dlast)

    arrays = [_np(kwargs, k) for k in NAMES]
    e_out, e_last, e_ckpt = emu.forward(*arrays, softplus, order=order, seed=1)
    # Same kernel bodies, compiled for the CPU with vector FMA vs. as plain scalar C++ here: equal
    # up to float32 rounding of differently contracted/ordered sums.
    assert_close(e_out, out, "out", rtol=1e-5, atol_scale=1e-5)
    assert_close(e_last, last, "last_state", rtol=1e-5, atol_scale=1e-5)
    assert e_ckpt.shape == (batch, -(-time // emu.CHUNK), state, channels)

    result = emu.backward(*arrays[:8], e_ckpt, dout, dlast, softplus, order=order, seed=2)
    emu_grads = dict(zip(("u", "delta", "A", "B", "C", "h0", "z", "D", "delta_bias"), result[:9]))
    for name in ("u", "delta", "A", "B", "C", "h0", "z", "D", "delta_bias"):
        if name in grads:
            assert emu_grads[name] is not None, name
            assert_close(emu_grads[name], grads[name], f"d{name}", rtol=1e-5, atol_scale=1e-5)
        elif name != "h0":
            assert emu_grads[name] is None, name
    if "h0" not in kwargs:  # the first checkpoint is the zero initial state
        assert not e_ckpt[:, 0].any()

    # With the forward's output re-formed (selective_scan_backward): the same gradients, bit for
    # bit, and the output to the rounding of the recompute (test_selective_scan_checkpointed.py)
    emitted = emu.backward(*arrays[:8], e_ckpt, dout, dlast, softplus, emit_out=True, order=order, seed=3)
    for name, got, want in zip(("u", "delta", "A", "B", "C", "h0", "z", "D", "delta_bias"), emitted, result):
        assert (got is None and want is None) or np.array_equal(got, want), name
    assert result[-1] is None
    assert_close(emitted[-1], out, "out re-formed", rtol=1e-5, atol_scale=1e-5)


def test_every_launch_plan_kernel_name_is_instantiated_in_the_metal_source():
    source = METAL_SOURCE.read_text()
    macro_names = set(re.findall(r'DFNET4_SCAN_INSTANTIATE\(\s*\d+,\s*\d+,\s*"(\w+)"\)', source))
    host_names = {f"dfnet4_selective_scan_{kind}_f32_{s}" for s in macro_names for kind in ("fwd", "bwd")}
    host_names |= set(re.findall(r'\[\[kernel\]\] void (dfnet4_selective_scan_sum_f32)\(', source))
    for state in range(1, 65):
        assert emu.forward_kernel(state) in host_names, state
        assert emu.backward_kernel(state) in host_names, state
    assert "dfnet4_selective_scan_sum_f32" in host_names
