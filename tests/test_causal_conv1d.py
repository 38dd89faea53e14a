"""dfnet4.ops.causal_conv1d (fused primitives) against dfnet4.reference.causal_conv1d (shifted slices):
every output and gradient over many shapes and widths, streaming, float64 against numpy and finite
differences, NaN inputs, memory. What every fused op keeps (compile, views, half and float64
inputs, threads, bad input, refused transforms): tests/test_fused_op_contract.py."""

from __future__ import annotations

import itertools
import math

import mlx.core as mx
import numpy as np
import pytest
from causal_conv_cases import NAMES, cotangents, make_inputs, vjp
from gradient_check import directional_derivatives
from test_selective_scan_support import assert_close

from dfnet4 import _extension, ops, reference

pytestmark = pytest.mark.skipif(
    not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)"
)

TIMES = (1, 2, 3, 7, 64, 500)  # shorter than the window, one chunk, several chunks (64 steps each)
CHANNELS = (1, 5, 31, 32, 33, 512)  # around the CPU's channel blocks (64) and vector widths
WIDTHS = (1, 2, 4)
# (batch, window given, bias given, activation): all 16 are used for every (time, K) below.
OPTIONS = list(itertools.product((1, 3), (True, False), (True, False), ("silu", None)))

# Tolerances (float32). y, the new window, dx and dwindow are sums of at most K + 1 terms, each
# rounded once (the kernel fuses multiply-adds, MLX does not), then SiLU through an exp accurate to
# ~2e-7: a few float32 ulps of |expected| + max|expected| (measured <= 1.4e-7 over the grid).
ELEMENTWISE = dict(rtol=2e-6, atol_scale=2e-6)
# dweight and dbias sum batch * time (up to 1500) such terms in a different order (per-chunk
# partials vs. MLX's reduction): rounding grows like sqrt(n) ulps of the terms' size (measured
# <= 1.4e-6 of max|expected|).
REDUCTION = dict(rtol=1e-5, atol_scale=1e-5)


def _check_against_reference(inputs, activation, label):
    cots = cotangents(inputs)
    (y, new_window), grads = vjp(ops.causal_conv1d, inputs, activation, cots)
    (ref_y, ref_window), ref_grads = vjp(reference.causal_conv1d, inputs, activation, cots)
    assert y.dtype == inputs["x"].dtype and new_window.dtype == inputs["x"].dtype
    assert_close(y, ref_y, f"{label} y", **ELEMENTWISE)
    assert_close(new_window, ref_window, f"{label} new_window", rtol=0, atol_scale=0)  # a copy
    assert set(grads) == set(ref_grads) == {k for k in NAMES if inputs[k] is not None}
    for name, g in grads.items():
        assert g.dtype == inputs[name].dtype, name
        tol = REDUCTION if name in ("weight", "bias") else ELEMENTWISE
        assert_close(g, ref_grads[name], f"{label} d{name}", **tol)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("time", TIMES)
def test_outputs_and_every_gradient_match_reference(time, width, device):
    for ci, channels in enumerate(CHANNELS):
        for m in range(4):
            batch, window, bias, activation = OPTIONS[(4 * ci + m + time) % len(OPTIONS)]
            inputs = make_inputs(batch, time, channels, width, bias=bias, window=window,
                                 seed=time * 1000 + channels * 10 + m)
            label = f"b{batch} t{time} c{channels} k{width} window={window} bias={bias} {activation}"
            _check_against_reference(inputs, activation, label)


@pytest.mark.parametrize("width", [3, 5, 6, 7, 8])
def test_other_widths(width, device):
    # The kernels are compiled per K: every width up to 8 once, across a chunk boundary.
    inputs = make_inputs(2, 70, 40, width, seed=width)
    _check_against_reference(inputs, "silu", f"k{width}")
    _check_against_reference(make_inputs(1, 3, 9, width, seed=width, bias=False), None, f"short k{width}")


def test_streaming_in_pieces_equals_one_call(device):
    # Pieces shorter than the window (1, 2) and longer, each continuing from the previous window.
    inputs = make_inputs(2, 40, 37, 4, seed=3)
    x, weight, bias, window = (inputs[k] for k in NAMES)
    whole, whole_window = ops.causal_conv1d(x, weight, bias, window, return_window=True)
    pieces, w, t = [], window, 0
    for n in (1, 2, 1, 10, 3, 23):
        y, w = ops.causal_conv1d(x[:, t : t + n], weight, bias, w, return_window=True)
        pieces.append(y)
        t += n
    assert t == x.shape[1]
    # The same kernel arithmetic on the same values, element by element: exact.
    assert_close(mx.concatenate(pieces, axis=1), whole, "pieces", rtol=0, atol_scale=0)
    assert_close(w, whole_window, "window", rtol=0, atol_scale=0)


def test_window_none_is_zeros_and_k1_window_is_empty(device):
    inputs = make_inputs(2, 5, 6, 4, window=False, seed=4)
    x, weight, bias = inputs["x"], inputs["weight"], inputs["bias"]
    with_zeros = ops.causal_conv1d(x, weight, bias, mx.zeros((2, 3, 6)))
    assert_close(ops.causal_conv1d(x, weight, bias), with_zeros, "window=None", rtol=0, atol_scale=0)
    # K = 1: no window rows; a (batch, 0, channels) window is accepted and one comes back.
    y, new_window = ops.causal_conv1d(x, weight[:1], bias, mx.zeros((2, 0, 6)), return_window=True)
    assert new_window.shape == (2, 0, 6)
    assert_close(y, reference.causal_conv1d(x, weight[:1], bias), "k1", **ELEMENTWISE)
    dwindow = mx.grad(lambda w: ops.causal_conv1d(x, weight[:1], bias, w).sum())(mx.zeros((2, 0, 6)))
    assert dwindow.shape == (2, 0, 6)


def _numpy_conv(x, weight, bias=None, window=None, silu=True):
    """float64 numpy oracle, independent of MLX."""
    k = weight.shape[0]
    if window is None:
        window = np.zeros((x.shape[0], k - 1, x.shape[2]))
    xp = np.concatenate([window, x], axis=1)
    t = x.shape[1]
    y = sum(weight[j] * xp[:, j : j + t] for j in range(k)) + (0 if bias is None else bias)
    if silu:
        y = y / (1 + np.exp(-y))
    return y, xp[:, t:]


@pytest.mark.parametrize("activation", ["silu", None])
@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_matches_numpy_and_gradients_match_finite_differences(activation):
    inputs = make_inputs(2, 9, 3, 4, seed=7, dtype=mx.float64)
    names = list(NAMES)
    y, new_window = ops.causal_conv1d(**inputs, activation=activation, return_window=True)
    ref_y, ref_window = _numpy_conv(*(np.array(inputs[k]) for k in names), silu=activation == "silu")
    assert y.dtype == mx.float64
    # Both in float64 with library exp: only rounding differences remain.
    assert_close(y, ref_y, "y", rtol=1e-13, atol_scale=1e-14)
    assert_close(new_window, ref_window, "new_window", rtol=0, atol_scale=0)

    cot_y, cot_window = (c.astype(mx.float64) for c in cotangents(inputs, seed=5))

    def loss(*arrays):
        y, w = ops.causal_conv1d(**dict(zip(names, arrays)), activation=activation, return_window=True)
        return (y * cot_y).sum() + (w * cot_window).sum()

    for i, analytic, numeric in directional_derivatives(loss, list(inputs.values()), seed=11):
        assert math.isclose(analytic, numeric, rel_tol=1e-7, abs_tol=1e-8), (names[i], analytic, numeric)


def test_a_channel_slice_of_a_wider_array(device):
    # How the Mamba block's in_proj split hands x over: a view with a row stride of 2C.
    inputs = make_inputs(2, 25, 12, 4, seed=4)
    x, weight, bias, window = (inputs[k] for k in NAMES)
    wide = mx.concatenate([x, 2 * x], axis=2)
    assert_close(ops.causal_conv1d(wide[:, :, :12], weight, bias, window), ops.causal_conv1d(x, weight, bias, window),
                 "split view", rtol=0, atol_scale=0)


def test_low_level_binding_checks_too():
    ext = _extension.load()
    x = mx.zeros((2, 5, 6))
    with pytest.raises(ValueError, match=r"causal_conv1d: window must have shape"):
        ext.causal_conv1d(x, mx.zeros((4, 6)), None, mx.zeros((2, 2, 6)), True)
    with pytest.raises(ValueError, match=r"causal_conv1d: bias must have the same dtype as x"):
        ext.causal_conv1d(x, mx.zeros((4, 6)), mx.zeros((6,), dtype=mx.float64), None, True)


@pytest.mark.parametrize("activation", ["silu", None])
def test_nan_in_gives_nan_out_without_crashing(activation, device):
    inputs = make_inputs(2, 100, 70, 4, seed=5)
    x = np.array(inputs["x"])
    x[1, 66, 3] = np.nan  # the second chunk, near its start: the first chunk's halo reads it
    inputs["x"] = mx.array(x)
    cots = cotangents(inputs)
    (y, w), grads = vjp(ops.causal_conv1d, inputs, activation, cots)
    _, ref_grads = vjp(reference.causal_conv1d, inputs, activation, cots)
    y = np.array(y)
    # x[66] is tap j of y[66 + K-1-j]: NaN exactly at y[1, 66..69, 3].
    mask = np.zeros(y.shape, bool)
    mask[1, 66:70, 3] = True
    assert np.array_equal(np.isnan(y), mask)
    assert np.all(np.isfinite(np.array(w)))
    # Gradients: NaN exactly where the autodiffed reference has NaN: through silu'(pre) in dx and
    # dbias (not without an activation, when g = dy does not depend on x), always in dweight.
    has_nan = {"x", "weight", "bias"} if activation == "silu" else {"weight"}
    for name in grads:
        got, want = np.isnan(np.array(grads[name])), np.isnan(np.array(ref_grads[name]))
        assert want.any() == (name in has_nan), name
        assert np.array_equal(got, want), name

    inputs["window"] = mx.full(inputs["window"].shape, float("nan"))
    inputs["x"] = mx.array(np.nan_to_num(x))
    y = np.array(ops.causal_conv1d(**inputs, activation=activation))
    assert np.isnan(y[:, :3]).all() and np.isfinite(y[:, 3:]).all()


@pytest.mark.cpu_only("peak-memory bound measured with the CPU backend's buffer lifetimes")
def test_backward_allocates_nothing_but_its_outputs():
    # Peak of a fused forward + backward beyond the live inputs: the cotangent dy (made contiguous)
    # and dx, 2 arrays of batch*time*channels, plus small partials (measured 2.09). The reference's
    # slice VJPs and SiLU VJP need ~20 such arrays.
    batch, time, channels = 4, 512, 256
    inputs = make_inputs(batch, time, channels, 4, seed=10)
    mx.eval(inputs)
    names = list(NAMES)
    full = batch * time * channels * 4

    def peak(conv):
        grad = mx.grad(lambda *a: conv(**dict(zip(names, a))).sum(), argnums=(0, 1, 2, 3))
        mx.eval(grad(*inputs.values()))  # warm up allocator caches
        mx.synchronize()
        baseline = mx.get_active_memory()
        mx.reset_peak_memory()
        mx.eval(grad(*inputs.values()))
        return mx.get_peak_memory() - baseline

    fused, ref = peak(ops.causal_conv1d), peak(reference.causal_conv1d)
    assert 0 < fused < 2.5 * full, (fused / full, ref / full)
    assert fused < ref / 4, (fused / full, ref / full)
