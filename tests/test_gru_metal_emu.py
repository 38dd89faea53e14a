"""The Metal GRU kernels (metal/gru.metal), run under the Metal emulator with eval_gpu's launch
plan, against the CPU primitive: forward (states and saved gates) and backward (dgx, dgh, dh0),
under every thread/threadgroup order the emulator offers."""

from __future__ import annotations

import metal_emulator
import mlx.core as mx
import numpy as np
import pytest

from dfnet4 import _extension

emu = metal_emulator.load().gru

ORDERS = [("forward", 0), ("reverse", 0), ("shuffled", 1), ("shuffled", 2)]
# (batch, time, hidden): hidden 7 leaves SIMD groups of a threadgroup without a unit, 33 makes
# lanes loop over more than one element of each dot product, 1 is the degenerate unit; batch 10
# spans two forward batch chunks (the second partial) and hidden 70 two backward threadgroups.
SHAPES = [(2, 3, 7), (1, 2, 33), (3, 2, 1), (10, 2, 70)]


def _inputs(B, T, H, seed):
    rng = np.random.default_rng(seed)
    f = lambda *s: mx.array(rng.standard_normal(s).astype(np.float32) * 0.7)  # noqa: E731
    return {"gx": f(B, T, 3 * H), "Wh": f(3 * H, H) / np.sqrt(H), "bhn": f(H), "h0": f(B, H),
            "dhs": f(B, T, H)}


def _close(a, b):
    # simd_sum adds 32 lane partials in another order than the CPU's blocked sums: a few ulps of
    # the largest term; 1e-5 relative to the largest magnitude (>= 1) is ~50x that.
    a, b = np.array(a), np.array(b)
    assert np.all(np.isfinite(a)), "the emulated kernel left unwritten (NaN) elements"
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))) < 1e-5


@pytest.mark.parametrize("B,T,H", SHAPES)
@pytest.mark.parametrize("order,seed", ORDERS)
def test_metal_forward_and_backward_match_cpu(B, T, H, order, seed):
    ext = _extension.load()
    a = _inputs(B, T, H, seed=B * 100 + H)
    hs, gates = ext.gru_forward(a["gx"], a["Wh"], a["bhn"], a["h0"])
    hs_m, gates_m = emu.forward(*(np.array(a[k]) for k in ("gx", "Wh", "bhn", "h0")), order=order, seed=seed)
    assert hs_m.shape == hs.shape and gates_m.shape == gates.shape
    assert _close(hs_m, hs) and _close(gates_m, gates)

    grads = ext.gru_backward(a["dhs"], gates, hs, a["Wh"], a["h0"])
    grads_m = emu.backward(*(np.array(v) for v in (a["dhs"], gates, hs, a["h0"], a["Wh"])), order=order, seed=seed)
    for name, g, g_m in zip(("dgx", "dgh", "dh0"), grads, grads_m):
        assert g_m.shape == g.shape, name
        assert _close(g_m, g), name
