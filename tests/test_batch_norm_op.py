"""dfnet4.ops.batch_norm (fused primitives) against dfnet4.reference.batch_norm (the formula under
MLX's autodiff), in float32 and float64, plus finite differences, compile, views and bad input."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from batch_norm_cases import EPS, NAMES, cotangents, make_inputs, vjp
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
def test_outputs_and_every_gradient_match_reference(shape, relu):
    inputs = make_inputs(shape, seed=sum(shape))
    cots = cotangents(inputs)
    outs, grads = vjp(ops.batch_norm, inputs, relu, cots)
    ref_outs, ref_grads = vjp(reference.batch_norm, inputs, relu, cots)
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

    analytic = mx.grad(loss, argnums=(0, 1, 2))(*inputs.values())
    rng = np.random.default_rng(11)
    h = 1e-6  # the inputs keep every value >= 1e-3 from the ReLU's kink: no step crosses it
    for i, name in enumerate(NAMES):
        direction = mx.array(rng.standard_normal(inputs[name].shape))
        plus, minus = list(inputs.values()), list(inputs.values())
        plus[i] = plus[i] + h * direction
        minus[i] = minus[i] - h * direction
        numeric = (loss(*plus) - loss(*minus)).item() / (2 * h)
        got = (analytic[i] * direction).sum().item()
        # Central differences in float64: truncation O(h^2), rounding O(1e-16 / h) ~ 1e-10.
        assert math.isclose(got, numeric, rel_tol=1e-7, abs_tol=1e-8), (name, got, numeric)


def test_compile_grad_of_compiled_and_shapeless():
    inputs = make_inputs((2, 70, 36), seed=2)

    def f(x, w, b):
        y, mean, var = ops.batch_norm(x, w, b, EPS, True)
        return (y * y).sum() + (mean * var).sum()

    argnums = (0, 1, 2)
    eager_val = f(*inputs.values())
    eager_grads = mx.grad(f, argnums=argnums)(*inputs.values())
    # The same primitives run: equal but for the summation order of the final loss.
    assert_close(mx.compile(f)(*inputs.values()), eager_val, "compiled value", rtol=1e-6, atol_scale=0)
    for name, g, e in zip(NAMES, mx.compile(mx.grad(f, argnums=argnums))(*inputs.values()), eager_grads):
        assert_close(g, e, f"compiled grad d{name}", rtol=1e-6, atol_scale=1e-7)
    shapeless = mx.compile(mx.grad(f, argnums=argnums), shapeless=True)
    for shape in [(2, 70, 36), (3, 130, 36), (1, 2, 36)]:  # other row counts: one compiled graph
        other = make_inputs(shape, seed=sum(shape))
        for name, g, e in zip(NAMES, shapeless(*other.values()), mx.grad(f, argnums=argnums)(*other.values())):
            assert g.shape == e.shape
            assert_close(g, e, f"shapeless {shape} d{name}", rtol=1e-6, atol_scale=1e-7)


def test_non_contiguous_inputs():
    inputs = make_inputs((4, 25, 12), seed=4)
    x, w, b = (inputs[k] for k in NAMES)
    views = {
        "x": mx.swapaxes(mx.contiguous(mx.swapaxes(x, 0, 2)), 0, 2),  # transposed storage
        "weight": mx.stack([w] * 2, axis=1).reshape(24)[::2],  # strided
        "bias": mx.concatenate([b, b])[12:],  # sliced with an offset
    }
    cots = cotangents(inputs)
    outs, grads = vjp(ops.batch_norm, views, True, cots)
    ref_outs, ref_grads = vjp(ops.batch_norm, inputs, True, cots)
    # Same kernels on the same values: exact.
    for name, a, r in zip(OUTPUTS, outs, ref_outs):
        assert_close(a, r, name, rtol=0, atol_scale=0)
    for name in NAMES:
        assert_close(grads[name], ref_grads[name], f"d{name}", rtol=0, atol_scale=0)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision_inputs(dtype):
    inputs = make_inputs((4, 60, 20), seed=9, dtype=dtype)
    y, mean, var = ops.batch_norm(*inputs.values(), EPS, True)
    assert y.dtype == dtype and mean.dtype == mx.float32
    ref_y, ref_mean, ref_var = reference.batch_norm(*(v.astype(mx.float32) for v in inputs.values()), EPS, True)
    # Computed in float32 from the same (half-valued) inputs; only y's final rounding to the half
    # type differs: 2^-8 relative for bfloat16, 2^-11 for float16.
    tol = 2.0**-7 if dtype == mx.bfloat16 else 2.0**-10
    assert_close(y, ref_y, "y", rtol=tol, atol_scale=tol)
    assert_close(mean, ref_mean, "mean", **FLOAT32_REFERENCE)
    assert_close(var, ref_var, "var", **FLOAT32_REFERENCE)


def test_thread_count_does_not_change_results(monkeypatch):
    # Work is split per (block of rows, channel span), and every sum over rows goes through fixed
    # per-block partials folded in order, so any thread count gives identical bits.
    inputs = make_inputs((3, 200, 150), seed=12)
    cots = cotangents(inputs)
    results = []
    for threads in ("1", "3", "8"):
        monkeypatch.setenv("DFNET4_NUM_THREADS", threads)
        outs, grads = vjp(ops.batch_norm, inputs, True, cots)
        results.append([np.array(o) for o in outs] + [np.array(grads[k]) for k in NAMES])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_nan_in_gives_nan_out_without_crashing():
    inputs = make_inputs((2, 300, 5), seed=5)
    x = np.array(inputs["x"])
    x[1, 266, 3] = np.nan
    inputs["x"] = mx.array(x)
    y, mean, var = ops.batch_norm(*inputs.values(), EPS, False)
    y, mean, var = np.array(y), np.array(mean), np.array(var)
    # A NaN poisons its channel's statistics, hence that channel, and nothing else.
    assert np.isnan(mean[3]) and np.isnan(var[3]) and np.isnan(y[..., 3]).all()
    assert np.isfinite(np.delete(y, 3, axis=-1)).all()


def _bad_call(**overrides):
    kwargs = dict(make_inputs((4, 6), seed=0), eps=EPS, relu=False)
    kwargs.update(overrides)
    return lambda: ops.batch_norm(**kwargs)


@pytest.mark.parametrize(
    "overrides, argument, needs",
    [
        ({"x": mx.zeros((6,))}, "x", r"\(\.\.\., channels\)"),
        ({"x": mx.zeros((4, 6), dtype=mx.int32)}, "x", "floating-point.*int32"),
        ({"x": [[1.0]]}, "x", "mx.array"),
        ({"x": mx.zeros((1, 6))}, "training", "more than one value per channel"),
        ({"x": mx.zeros((4, 0))}, "x", r"\(\.\.\., channels\)"),
        ({"weight": mx.zeros((5,))}, "weight", r"\(channels,\) .*\(6,\)"),
        ({"weight": mx.zeros((6, 1))}, "weight", r"\(channels,\)"),
        ({"bias": mx.zeros((6,), dtype=mx.uint8)}, "bias", "floating-point"),
        ({"bias": mx.zeros((7,))}, "bias", r"\(channels,\)"),
        ({"eps": 0.0}, "eps", "> 0"),
        ({"eps": float("inf")}, "eps", "finite"),
        ({"eps": "1e-5"}, "eps", "finite number"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(overrides, argument, needs):
    call = _bad_call(**overrides)
    with pytest.raises(ValueError, match=rf"batch_norm: {argument} .*{needs}"):
        call()  # raised while building the graph: nothing is evaluated


def test_low_level_binding_checks_too():
    ext = _extension.load()
    x = mx.zeros((4, 6))
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(channels,\)"):
        ext.batch_norm(x, mx.zeros((5,)), mx.zeros((6,)), EPS, False)
    with pytest.raises(ValueError, match=r"batch_norm: bias must have the same dtype as x"):
        ext.batch_norm(x, mx.zeros((6,)), mx.zeros((6,), dtype=mx.float64), EPS, False)
    with pytest.raises(ValueError, match=r"batch_norm: eps must be a finite number > 0"):
        ext.batch_norm(x, mx.zeros((6,)), mx.zeros((6,)), -1.0, False)


def test_jvp_vmap_and_second_order_raise_clear_errors():
    inputs = make_inputs((4, 3), seed=1)
    arrays = [inputs[k] for k in NAMES]
    f = lambda *a: ops.batch_norm(*a)[0]  # noqa: E731
    with pytest.raises(RuntimeError, match=r"batch_norm does not support forward-mode .*reference\.batch_norm"):
        mx.jvp(f, arrays, arrays)
    with pytest.raises(RuntimeError, match="batch_norm does not support mx.vmap"):
        mx.vmap(lambda x: ops.batch_norm(x, *arrays[1:])[0])(mx.stack([arrays[0]] * 2))
    first = mx.grad(lambda x: ops.batch_norm(x, *arrays[1:])[0].sum())
    with pytest.raises(RuntimeError, match=r"batch_norm: second-order .*reference\.batch_norm"):
        mx.eval(mx.grad(lambda x: (first(x) ** 2).sum())(arrays[0]))


def test_compile_does_not_merge_different_eps_or_relu():
    # mx.compile merges equivalent primitives on the same inputs; eps and the ReLU must tell them apart.
    inputs = make_inputs((50, 4), seed=3)

    def f(x, w, b):
        return [ops.batch_norm(x, w, b, e, r)[0] for e, r in ((1e-5, False), (1e-1, False), (1e-5, True))]

    for a, e in zip(mx.compile(f)(*inputs.values()), f(*inputs.values())):
        assert_close(a, e, "compiled", rtol=0, atol_scale=0)
