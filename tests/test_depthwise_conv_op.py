"""dfnet4.ops.depthwise_conv (fused primitives) against dfnet4.reference.depthwise_conv (shifted
slices), in float32 and float64, plus finite differences, compile, views and bad input."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
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


def _inputs(shape, k, seed, dtype=mx.float32):
    rng = np.random.default_rng(seed)
    arr = lambda a: mx.array(a, dtype=mx.float64).astype(dtype)  # noqa: E731
    return arr(rng.standard_normal(shape)), arr(rng.standard_normal((k, shape[-1])) / np.sqrt(k))


def _vjp(conv, x, w, geometry, cot):
    s, p, t, op = geometry
    return mx.vjp(lambda a, b: conv(a, b, s, p, t, op), [x, w], [cot])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-k{c[1]}-s{c[2]}-p{c[3]}-t{int(c[4])}")
def test_output_and_both_gradients_match_reference(case):
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


def test_transposed_is_the_adjoint_of_the_strided_conv():
    # <gather(a), b> = <a, scatter(b)> for the same weights: the two maps are exact transposes.
    a, w = _inputs((3, 4, 96, 7), 3, seed=2, dtype=mx.float64)
    b = mx.array(np.random.default_rng(3).standard_normal((3, 4, 48, 7)), dtype=mx.float64)
    lhs = (ops.depthwise_conv(a, w, 2) * b).sum().item()
    rhs = (a * ops.depthwise_conv(b, w, 2, transposed=True, output_padding=1)).sum().item()
    assert math.isclose(lhs, rhs, rel_tol=1e-13)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_float64_matches_reference_and_gradients_match_finite_differences(transposed):
    geometry = (2, 1, transposed, 1 if transposed else 0)
    x, w = _inputs((2, 3, 11, 4), 3, seed=7, dtype=mx.float64)
    y = ops.depthwise_conv(x, w, *geometry)
    assert y.dtype == mx.float64
    assert_close(y, reference.depthwise_conv(x, w, *geometry), "y", rtol=1e-13, atol_scale=1e-14)
    cot = mx.array(np.random.default_rng(5).standard_normal(y.shape), dtype=mx.float64)

    def loss(a, b):
        return (ops.depthwise_conv(a, b, *geometry) * cot).sum()

    grads = mx.grad(loss, argnums=(0, 1))(x, w)
    rng = np.random.default_rng(11)
    h = 1e-6
    for i, name in enumerate(("x", "weight")):
        direction = mx.array(rng.standard_normal((x, w)[i].shape), dtype=mx.float64)
        plus, minus = [x, w], [x, w]
        plus[i] = plus[i] + h * direction
        minus[i] = minus[i] - h * direction
        numeric = (loss(*plus) - loss(*minus)).item() / (2 * h)
        got = (grads[i] * direction).sum().item()
        # linear in each argument: central differences are exact up to rounding (~1e-16 / h)
        assert math.isclose(got, numeric, rel_tol=1e-8, abs_tol=1e-9), (name, got, numeric)


def test_compile_grad_of_compiled_and_shapeless():
    def f(x, w):
        y = ops.depthwise_conv(x, w, 2)
        return (y * y).sum()

    x, w = _inputs((2, 30, 20, 16), 3, seed=2)
    eager = mx.grad(f, argnums=(0, 1))(x, w)
    assert_close(mx.compile(f)(x, w), f(x, w), "compiled value", rtol=1e-6, atol_scale=0)
    for g, e in zip(mx.compile(mx.grad(f, argnums=(0, 1)))(x, w), eager):
        assert_close(g, e, "compiled grad", rtol=1e-6, atol_scale=1e-7)
    shapeless = mx.compile(mx.grad(f, argnums=(0, 1)), shapeless=True)
    for shape in [(2, 30, 20, 16), (3, 7, 20, 16), (1, 1, 20, 16)]:  # other rows: one compiled graph
        a, b = _inputs(shape, 3, seed=sum(shape))
        for g, e in zip(shapeless(a, b), mx.grad(f, argnums=(0, 1))(a, b)):
            assert g.shape == e.shape
            assert_close(g, e, f"shapeless {shape}", rtol=1e-6, atol_scale=1e-7)


def test_non_contiguous_inputs():
    x, w = _inputs((4, 6, 10, 12), 3, seed=4)
    views = (mx.swapaxes(mx.contiguous(mx.swapaxes(x, 0, 3)), 0, 3), mx.contiguous(w.T).T)
    cot = mx.array(np.random.default_rng(1).standard_normal((4, 6, 5, 12)), dtype=mx.float32)
    (y,), grads = _vjp(ops.depthwise_conv, *views, (2, 1, False, 0), cot)
    (ry,), ref_grads = _vjp(ops.depthwise_conv, x, w, (2, 1, False, 0), cot)
    assert_close(y, ry, "y", rtol=0, atol_scale=0)  # same kernels on the same values: exact
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, "grad", rtol=0, atol_scale=0)
    # a channel slice of a wider array
    wide = mx.concatenate([x, 2 * x], axis=-1)
    assert_close(ops.depthwise_conv(wide[..., :12], w, 2), ry, "channel slice", rtol=0, atol_scale=0)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision_inputs(dtype):
    x, w = _inputs((2, 6, 16, 8), 3, seed=9, dtype=dtype)
    y = ops.depthwise_conv(x, w, 2)
    assert y.dtype == dtype
    ref = reference.depthwise_conv(x.astype(mx.float32), w.astype(mx.float32), 2)
    # Computed in float32 from the same (half-valued) inputs; only the final rounding differs.
    tol = 2.0**-7 if dtype == mx.bfloat16 else 2.0**-10
    assert_close(y, ref, "y", rtol=tol, atol_scale=tol)


def test_thread_count_does_not_change_results(monkeypatch):
    # Work is split per (block of rows, channel span); dweight goes through per-block partials
    # folded in order: any thread count gives identical bits.
    x, w = _inputs((3, 50, 48, 70), 3, seed=12)
    cot = mx.array(np.random.default_rng(2).standard_normal((3, 50, 24, 70)), dtype=mx.float32)
    results = []
    for threads in ("1", "3", "8"):
        monkeypatch.setenv("DFNET4_NUM_THREADS", threads)
        (y,), (dx, dw) = _vjp(ops.depthwise_conv, x, w, (2, 1, False, 0), cot)
        results.append([np.array(a) for a in (y, dx, dw)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, argument, needs",
    [
        ({"x": mx.zeros((6,))}, "x", r"\(\.\.\., freqs, channels\)"),
        ({"x": mx.zeros((2, 6, 4), dtype=mx.int32)}, "x", "floating-point"),
        ({"weight": mx.zeros((3, 5))}, "weight", r"x's channels \(4\)"),
        ({"weight": mx.zeros((9, 4))}, "weight", "1 to 8 taps"),
        ({"weight": mx.zeros((3,))}, "weight", r"\(K, channels\)"),
        ({"stride": 0}, "stride", ">= 1"),
        ({"stride": 1.5}, "stride", "integer"),
        ({"padding": 3}, "padding", r"\[0, 3\)"),
        ({"output_padding": 1}, "output_padding", "transposed convolutions only"),
        ({"transposed": True, "stride": 2, "output_padding": 2}, "output_padding", r"\[0, 2\)"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, argument, needs):
    args = {"x": mx.zeros((2, 6, 4)), "weight": mx.zeros((3, 4))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"depthwise_conv: {argument} .*{needs}"):
        ops.depthwise_conv(**args)  # raised while building the graph


def test_low_level_binding_checks_too():
    ext = _extension.load()
    x = mx.zeros((2, 6, 4))
    with pytest.raises(ValueError, match=r"depthwise_conv: weight must have the same dtype as x"):
        ext.depthwise_conv(x, mx.zeros((3, 4), dtype=mx.float64), 1, 1, False, 0)
    with pytest.raises(ValueError, match=r"depthwise_conv: x's 1 freqs give no output"):
        ext.depthwise_conv(mx.zeros((2, 1, 4)), mx.zeros((3, 4)), 1, 0, False, 0)
    with pytest.raises(ValueError, match=r"depthwise_conv: x's 1 freqs give no output"):
        ext.depthwise_conv(mx.zeros((2, 1, 4)), mx.zeros((3, 4)), 1, 2, True, 0)


def test_jvp_vmap_and_second_order_raise_clear_errors():
    x, w = _inputs((2, 6, 4), 3, seed=1)
    f = lambda a: ops.depthwise_conv(a, w)  # noqa: E731
    with pytest.raises(RuntimeError, match=r"depthwise_conv does not support forward-mode .*reference\.depthwise_conv"):
        mx.jvp(f, [x], [x])
    with pytest.raises(RuntimeError, match="depthwise_conv does not support mx.vmap"):
        mx.vmap(f)(mx.stack([x] * 2))
    first = mx.grad(lambda a: (f(a) ** 2).sum())
    with pytest.raises(RuntimeError, match=r"depthwise_conv: second-order .*reference\.depthwise_conv"):
        mx.eval(mx.grad(lambda a: (first(a) ** 2).sum())(x))


def test_compile_does_not_merge_different_geometries():
    x, w = _inputs((2, 6, 8, 4), 3, seed=3)

    def f(a, b):
        return [ops.depthwise_conv(a, b, 2, 1), ops.depthwise_conv(a, b, 2, 0), ops.depthwise_conv(a, b, 1, 1)]

    for got, want in zip(mx.compile(f)(x, w), f(x, w)):
        assert got.shape == want.shape
        assert_close(got, want, "compiled", rtol=0, atol_scale=0)
