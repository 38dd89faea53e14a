"""dfnet4.ops.depthwise_conv (fused primitives) against dfnet4.reference.depthwise_conv (shifted
slices) and float64, finite differences, adjointness, the low-level binding's checks. Compile,
views, half precision, thread count, ISA variants, refused transforms and bad input: the shared
contract (tests/test_fused_op_contract.py, DepthwiseConvSpec in tests/fused_op_specs.py)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from depthwise_conv_cases import make_inputs as _inputs
from gradient_check import directional_derivatives
from test_selective_scan_support import assert_close

from dfnet4 import _extension, ops, reference
from dfnet4.ops.depthwise_conv import output_size

pytestmark = pytest.mark.skipif(
    not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)"
)

# (x shape, K, stride, padding, transposed, output_padding): DFN3's blocks (1x3, strides 1 and 2,
# the transposed 1x3 / stride 2 / output_padding 1), other widths, strides and paddings, channel
# counts around the CPU's 64-channel spans, one frequency, rows around the 8-row blocks.
CASES = [
    ((2, 5, 96, 64), 3, 2, 1, False, 0),
    ((2, 5, 32, 64), 3, 2, 1, False, 0),
    ((3, 3, 8, 64), 3, 1, 1, False, 0),
    ((2, 5, 48, 64), 3, 2, 1, True, 1),
    ((2, 5, 16, 65), 3, 2, 1, True, 1),
    ((17, 9, 130), 5, 2, 2, False, 0),
    ((4, 7, 9, 5), 5, 3, 1, True, 2),
    ((4, 7, 9, 5), 4, 1, 0, False, 0),
    ((4, 7, 9, 5), 2, 2, 1, True, 0),
    ((1, 1, 3), 1, 1, 0, False, 0),
    ((6, 1, 1), 3, 1, 1, False, 0),
]
# Every output is a sum of at most K products, the weight gradient a sum over all rows and
# positions (here up to 4800 terms), rounded in a different order than MLX's slices: a few ulps of
# the largest value (measured <= 2.4e-7 for y and dx, <= 7.3e-7 for dweight).
ELEMENTWISE = dict(rtol=2e-6, atol_scale=2e-6)
REDUCTION = dict(rtol=1e-5, atol_scale=1e-5)


def _vjp(conv, x, w, geometry, cot):
    s, p, t, op = geometry
    return mx.vjp(lambda a, b: conv(a, b, s, p, t, op), [x, w], [cot])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-k{c[1]}-s{c[2]}-p{c[3]}-t{int(c[4])}")
def test_output_and_both_gradients_match_reference(case, device):
    shape, k, *geometry = case
    x, w = _inputs(shape, k, seed=sum(shape) + k)
    ref_y = reference.depthwise_conv(x, w, *geometry)
    cot = mx.array(np.random.default_rng(1).standard_normal(ref_y.shape), dtype=mx.float32)
    (y,), (dx, dw) = _vjp(ops.depthwise_conv, x, w, geometry, cot)
    (ry,), (rdx, rdw) = _vjp(reference.depthwise_conv, x, w, geometry, cot)
    assert y.shape == ref_y.shape and y.dtype == mx.float32
    assert y.shape[-2] == output_size(shape[-2], k, *geometry)
    assert_close(y, ry, "y", **ELEMENTWISE)
    assert_close(dx, rdx, "dx", **ELEMENTWISE)
    assert_close(dw, rdw, "dweight", **REDUCTION)


@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_transposed_is_the_adjoint_of_the_strided_conv():
    # <gather(a), b> = <a, scatter(b)> for the same weights: the two maps are exact transposes.
    a, w = _inputs((3, 4, 96, 7), 3, seed=2, dtype=mx.float64)
    b = mx.array(np.random.default_rng(3).standard_normal((3, 4, 48, 7)), dtype=mx.float64)
    lhs = (ops.depthwise_conv(a, w, 2) * b).sum().item()
    rhs = (a * ops.depthwise_conv(b, w, 2, transposed=True, output_padding=1)).sum().item()
    assert math.isclose(lhs, rhs, rel_tol=1e-13)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_matches_reference_and_gradients_match_finite_differences(transposed):
    geometry = (2, 1, transposed, 1 if transposed else 0)
    x, w = _inputs((2, 3, 11, 4), 3, seed=7, dtype=mx.float64)
    y = ops.depthwise_conv(x, w, *geometry)
    assert y.dtype == mx.float64
    assert_close(y, reference.depthwise_conv(x, w, *geometry), "y", rtol=1e-13, atol_scale=1e-14)
    cot = mx.array(np.random.default_rng(5).standard_normal(y.shape), dtype=mx.float64)

    def loss(a, b):
        return (ops.depthwise_conv(a, b, *geometry) * cot).sum()

    # linear in each argument: central differences are exact up to rounding (~1e-16 / eps)
    for i, analytic, numeric in directional_derivatives(loss, [x, w], seed=11):
        assert math.isclose(analytic, numeric, rel_tol=1e-8, abs_tol=1e-9), (("x", "weight")[i], analytic, numeric)


def test_low_level_binding_checks_too():
    ext = _extension.load()
    x = mx.zeros((2, 6, 4))
    with pytest.raises(ValueError, match=r"depthwise_conv: weight must have the same dtype as x"):
        ext.depthwise_conv(x, mx.zeros((3, 4), dtype=mx.float64), 1, 1, False, 0)
    with pytest.raises(ValueError, match=r"depthwise_conv: x's 1 freqs give no output"):
        ext.depthwise_conv(mx.zeros((2, 1, 4)), mx.zeros((3, 4)), 1, 0, False, 0)
    with pytest.raises(ValueError, match=r"depthwise_conv: x's 1 freqs give no output"):
        ext.depthwise_conv(mx.zeros((2, 1, 4)), mx.zeros((3, 4)), 1, 2, True, 0)


def test_compile_does_not_merge_different_geometries(device):
    x, w = _inputs((2, 6, 8, 4), 3, seed=3)

    def f(a, b):
        return [ops.depthwise_conv(a, b, 2, 1), ops.depthwise_conv(a, b, 2, 0), ops.depthwise_conv(a, b, 1, 1)]

    for got, want in zip(mx.compile(f)(x, w), f(x, w)):
        assert got.shape == want.shape
        assert_close(got, want, "compiled", rtol=0, atol_scale=0)
