"""dfnet4.ops.rms_norm (fused primitives) against dfnet4.reference.rms_norm (the formula under MLX's
autodiff), mx.fast.rms_norm and float64; finite differences, one channel, zero rows, NaN, the
low-level binding's checks. Compile, views, half precision, thread count, ISA variants, refused
transforms and bad input: the shared contract (tests/test_fused_op_contract.py, RmsNormSpec in
tests/fused_op_specs.py)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from gradient_check import directional_derivatives
from rms_norm_cases import EPS, NAMES, cotangent, make_inputs, vjp
from test_selective_scan_support import assert_close

from dfnet4 import _extension, ops, reference

pytestmark = pytest.mark.skipif(
    not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)"
)

# 1-D x (one row); rows within one 32-row block, exactly one, one + 1, many; channels below, at and
# around the CPU's 16-channel chunks and the GPU's 32 lanes (C % 16 != 0 leaves a tail), large C;
# leading axes of rank 1 to 3, the model's (batch, time, channels) among them. C = 1 has its own test.
SHAPES = [(257,), (3, 16), (7, 257), (32, 64), (33, 15), (1000, 130), (4, 4096), (2, 50, 24, 16),
          (8, 500, 256)]
# Tolerances, as a fraction of each array's largest magnitude (float32). Against the float64
# reference (the truth): row sums of up to 4096 squares in 16 lanes, dweight summed over up to 4000
# rows in 32-row blocks; measured worst over SHAPES 3.3e-7 (dweight), <= 1.6e-7 elsewhere.
TRUTH = dict(rtol=0, atol_scale=1e-6)
# Against the float32 reference: MLX sums dweight over the rows less accurately (measured 1.7e-6
# from float64 at 4000 rows, as mx.fast.rms_norm's own vjp), which sets the bound.
FLOAT32_REFERENCE = dict(rtol=0, atol_scale=5e-6)


def _as64(inputs, cot):
    return {k: v.astype(mx.float64) for k, v in inputs.items()}, cot.astype(mx.float64)


def _truth(inputs, cot):
    with mx.stream(mx.cpu):  # float64, which only the CPU has
        return vjp(reference.rms_norm, *_as64(inputs, cot))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_and_both_gradients_match_reference(shape, device):
    inputs = make_inputs(shape, seed=sum(shape))
    cot = cotangent(inputs)
    y, grads = vjp(ops.rms_norm, inputs, cot)
    ref_y, ref_grads = vjp(reference.rms_norm, inputs, cot)
    true_y, true_grads = _truth(inputs, cot)
    assert y.dtype == mx.float32 and y.shape == shape
    assert_close(y, true_y, f"{shape} y vs float64", **TRUTH)
    assert_close(y, ref_y, f"{shape} y vs float32 reference", **FLOAT32_REFERENCE)
    for name in NAMES:
        assert grads[name].dtype == mx.float32 and grads[name].shape == inputs[name].shape
        assert_close(grads[name], true_grads[name], f"{shape} d{name} vs float64", **TRUTH)
        assert_close(grads[name], ref_grads[name], f"{shape} d{name} vs float32 reference", **FLOAT32_REFERENCE)


@pytest.mark.parametrize("shape", [(7, 257), (2, 50, 24, 16), (8, 500, 256)], ids=lambda s: "x".join(map(str, s)))
def test_reference_is_mx_fast_rms_norm(shape, device):
    # The oracle is the formula as written; it must be what mx.fast.rms_norm computes (forward and
    # vjp). On the CPU MLX runs the same formula (measured: y and dweight bitwise equal, dx within
    # 1.1e-7); elsewhere its own kernels: float32 roundings of the row sums, as TRUTH allows.
    inputs = make_inputs(shape, seed=3)
    cot = cotangent(inputs)
    y, grads = vjp(reference.rms_norm, inputs, cot)
    fast_y, fast_grads = vjp(lambda x, w, eps: mx.fast.rms_norm(x, w, eps), inputs, cot)
    assert_close(y, fast_y, "y", **TRUTH)
    for name in NAMES:
        assert_close(grads[name], fast_grads[name], f"d{name}", **FLOAT32_REFERENCE)


@pytest.mark.parametrize("shape", [(1,), (5, 1)], ids=lambda s: "x".join(map(str, s)))
def test_one_channel(shape, device):
    # With C = 1, y = x / sqrt(x^2 + eps) * w and dx = r g - x r^3 x g = r g eps / (x^2 + eps): two
    # terms of size r |g| that cancel to ~eps / x^2 of it, in any float32 implementation of the
    # formula (mx.fast.rms_norm's vjp: 8e-2 of max |dx| from float64). So dx is judged against the
    # size of those terms; y and dweight as everywhere.
    inputs = make_inputs(shape, seed=11)
    cot = cotangent(inputs)
    y, grads = vjp(ops.rms_norm, inputs, cot)
    true_y, true_grads = _truth(inputs, cot)
    assert_close(y, true_y, "y", **TRUTH)
    assert_close(grads["weight"], true_grads["weight"], "dweight", **TRUTH)
    x64, w64 = (np.array(inputs[k], np.float64) for k in NAMES)
    terms = np.abs(np.array(cot, np.float64) * w64 / np.sqrt(x64 * x64 + EPS))
    err = np.abs(np.array(grads["x"], np.float64) - np.array(true_grads["x"]))
    assert np.all(err <= 4 * 2.0**-24 * terms.max()), (err, terms)


def test_zero_rows_give_an_empty_y_and_zero_dweight(device):
    inputs = make_inputs((3, 0, 8), seed=1)
    cot = cotangent(inputs)
    y, grads = vjp(ops.rms_norm, inputs, cot)
    assert y.shape == (3, 0, 8) and grads["x"].shape == (3, 0, 8)
    assert np.array_equal(np.array(grads["weight"]), np.zeros(8, np.float32))


@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_matches_reference_and_gradients_match_finite_differences():
    inputs = make_inputs((3, 70, 37), seed=7, dtype=mx.float64)
    cot = cotangent(inputs, seed=5)
    y, grads = vjp(ops.rms_norm, inputs, cot)
    ref_y, ref_grads = vjp(reference.rms_norm, inputs, cot)
    # Both in float64: only summation order differs.
    assert y.dtype == mx.float64
    assert_close(y, ref_y, "y", rtol=1e-13, atol_scale=1e-14)
    for name in NAMES:
        assert grads[name].dtype == mx.float64
        assert_close(grads[name], ref_grads[name], f"d{name}", rtol=1e-12, atol_scale=1e-13)

    def loss(*arrays):
        return (ops.rms_norm(*arrays, EPS) * cot).sum()

    for i, analytic, numeric in directional_derivatives(loss, list(inputs.values()), seed=11, directions=2):
        assert math.isclose(analytic, numeric, rel_tol=1e-7, abs_tol=1e-8), (NAMES[i], analytic, numeric)


def test_nan_in_gives_nan_out_without_crashing(device):
    inputs = make_inputs((2, 40, 37), seed=5)
    x = np.array(inputs["x"])
    x[1, 33, 20] = np.nan
    inputs["x"] = mx.array(x)
    cot = cotangent(inputs)
    y, grads = vjp(ops.rms_norm, inputs, cot)
    y, dx, dweight = np.array(y), np.array(grads["x"]), np.array(grads["weight"])
    # A NaN poisons its row's scale, hence that row of y and dx, and every channel's dweight (a sum
    # over the rows); nothing else.
    assert np.isnan(y[1, 33]).all() and np.isnan(dx[1, 33]).all() and np.isnan(dweight).all()
    others = np.ones(y.shape[:-1], bool)
    others[1, 33] = False
    assert np.isfinite(y[others]).all() and np.isfinite(dx[others]).all()


def test_low_level_binding_checks_too():
    ext = _extension.load()
    x = mx.zeros((4, 6))
    with pytest.raises(ValueError, match=r"rms_norm: weight must have shape \(channels,\)"):
        ext.rms_norm(x, mx.zeros((5,)), EPS)
    with pytest.raises(ValueError, match=r"rms_norm: weight must have the same dtype as x"):
        ext.rms_norm(x, mx.zeros((6,), dtype=mx.float64), EPS)
    with pytest.raises(ValueError, match=r"rms_norm: eps must be a finite number > 0"):
        ext.rms_norm(x, mx.zeros((6,)), -1.0)
    with pytest.raises(ValueError, match=r"rms_norm: x must have shape \(\.\.\., channels\)"):
        ext.rms_norm(mx.array(1.0), mx.zeros((1,)), EPS)
    with pytest.raises(ValueError, match=r"rms_norm: the fused kernels take float32"):
        ext.rms_norm(x.astype(mx.int32), mx.zeros((6,), dtype=mx.int32), EPS)


def test_compile_does_not_merge_different_eps(device):
    # mx.compile merges equivalent primitives on the same inputs; eps must tell them apart.
    inputs = make_inputs((50, 4), seed=3)
    inputs["x"] = inputs["x"] * 1e-2  # mean(x^2) near eps, so eps changes y

    def f(x, w):
        return [ops.rms_norm(x, w, e) for e in (1e-5, 1e-1)]

    compiled, eager = mx.compile(f)(*inputs.values()), f(*inputs.values())
    assert not np.allclose(np.array(eager[0]), np.array(eager[1]))
    for a, e in zip(compiled, eager):
        assert_close(a, e, "compiled", rtol=0, atol_scale=0)
