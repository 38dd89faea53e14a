"""dfnet4.ops.batch_norm (fused primitives) against dfnet4.reference.batch_norm (the formula under
MLX's autodiff) and float64, finite differences, NaN, the low-level binding's checks. Compile, views,
half precision, thread count, ISA variants, refused transforms and bad input: the shared contract
(tests/test_fused_op_contract.py, BatchNormSpec in tests/fused_op_specs.py)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from batch_norm_cases import EPS, NAMES, cotangents, make_inputs, vjp
from gradient_check import directional_derivatives
from test_selective_scan_support import assert_close

from dfnet4 import _extension, ops, reference

pytestmark = pytest.mark.skipif(
    not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)"
)

# Rows around the kernel's 256-row blocks (one short block, exactly one, one + 1, many); channels
# around the CPU's 64-channel spans; 2-D and the model's 4-D layout.
SHAPES = [(2, 3), (3, 1), (255, 64), (256, 65), (257, 3), (1000, 130), (4097, 5), (2, 50, 24, 16),
          (2, 100, 48, 64)]
# Tolerances, as a fraction of each output's largest magnitude (float32). Against the float64
# reference (the truth): the fused statistics merge 256-row blocks pairwise, so their rounding stays
# near one ulp per merge level; measured worst over SHAPES 1.1e-6 (dweight), <= 7e-7 elsewhere.
TRUTH = dict(rtol=0, atol_scale=4e-6)
# Against the float32 reference: MLX's float32 mean and var over up to 9600 rows are ~10x less
# accurate than the fused ones (measured 7.9e-6 from float64 for the mean), which sets the bound.
FLOAT32_REFERENCE = dict(rtol=0, atol_scale=3e-5)
OUTPUTS = ("y", "mean", "var")


def _as64(inputs, cots):
    return {k: v.astype(mx.float64) for k, v in inputs.items()}, [c.astype(mx.float64) for c in cots]


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_outputs_and_every_gradient_match_reference(shape, relu, device):
    inputs = make_inputs(shape, seed=sum(shape))
    cots = cotangents(inputs)
    outs, grads = vjp(ops.batch_norm, inputs, relu, cots)
    ref_outs, ref_grads = vjp(reference.batch_norm, inputs, relu, cots)
    with mx.stream(mx.cpu):  # the truth in float64, which only the CPU has
        true_outs, true_grads = vjp(reference.batch_norm, *_as64(inputs, cots)[:1], relu, _as64(inputs, cots)[1])
    assert outs[0].dtype == mx.float32 and outs[0].shape == shape
    for name, a, r, t in zip(OUTPUTS, outs, ref_outs, true_outs):
        assert_close(a, t, f"{shape} {name} vs float64", **TRUTH)
        assert_close(a, r, f"{shape} {name} vs float32 reference", **FLOAT32_REFERENCE)
    for name in NAMES:
        assert grads[name].dtype == mx.float32
        assert_close(grads[name], true_grads[name], f"{shape} d{name} vs float64", **TRUTH)
        assert_close(grads[name], ref_grads[name], f"{shape} d{name} vs float32 reference", **FLOAT32_REFERENCE)


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_matches_reference_and_gradients_match_finite_differences(relu):
    inputs = make_inputs((3, 70, 4), seed=7, dtype=mx.float64)
    cots = cotangents(inputs, seed=5)
    outs, grads = vjp(ops.batch_norm, inputs, relu, cots)
    ref_outs, ref_grads = vjp(reference.batch_norm, inputs, relu, cots)
    # Both in float64: only summation order differs.
    for name, a, r in zip(OUTPUTS, outs, ref_outs):
        assert a.dtype == mx.float64
        assert_close(a, r, name, rtol=1e-12, atol_scale=1e-13)
    for name in NAMES:
        assert_close(grads[name], ref_grads[name], f"d{name}", rtol=1e-11, atol_scale=1e-12)

    def loss(*arrays):
        y, mean, var = ops.batch_norm(*arrays, EPS, relu)
        return (y * cots[0]).sum() + (mean * cots[1]).sum() + (var * cots[2]).sum()

    # the inputs keep every value >= 1e-3 from the ReLU's kink: no step of 1e-6 crosses it
    for i, analytic, numeric in directional_derivatives(loss, list(inputs.values()), seed=11):
        assert math.isclose(analytic, numeric, rel_tol=1e-7, abs_tol=1e-8), (NAMES[i], analytic, numeric)


def test_nan_in_gives_nan_out_without_crashing(device):
    inputs = make_inputs((2, 300, 5), seed=5)
    x = np.array(inputs["x"])
    x[1, 266, 3] = np.nan
    inputs["x"] = mx.array(x)
    y, mean, var = ops.batch_norm(*inputs.values(), EPS, False)
    y, mean, var = np.array(y), np.array(mean), np.array(var)
    # A NaN poisons its channel's statistics, hence that channel, and nothing else.
    assert np.isnan(mean[3]) and np.isnan(var[3]) and np.isnan(y[..., 3]).all()
    assert np.isfinite(np.delete(y, 3, axis=-1)).all()


def test_low_level_binding_checks_too():
    ext = _extension.load()
    x = mx.zeros((4, 6))
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(channels,\)"):
        ext.batch_norm(x, mx.zeros((5,)), mx.zeros((6,)), EPS, False)
    with pytest.raises(ValueError, match=r"batch_norm: bias must have the same dtype as x"):
        ext.batch_norm(x, mx.zeros((6,)), mx.zeros((6,), dtype=mx.float64), EPS, False)
    with pytest.raises(ValueError, match=r"batch_norm: eps must be a finite number > 0"):
        ext.batch_norm(x, mx.zeros((6,)), mx.zeros((6,)), -1.0, False)


def test_compile_does_not_merge_different_eps_or_relu(device):
    # mx.compile merges equivalent primitives on the same inputs; eps and the ReLU must tell them apart.
    inputs = make_inputs((50, 4), seed=3)

    def f(x, w, b):
        return [ops.batch_norm(x, w, b, e, r)[0] for e, r in ((1e-5, False), (1e-1, False), (1e-5, True))]

    for a, e in zip(mx.compile(f)(*inputs.values()), f(*inputs.values())):
        assert_close(a, e, "compiled", rtol=0, atol_scale=0)
