"""dfnet4's BatchNorm against mlx.nn.BatchNorm and float64 numpy, on both of its training paths: the
pure-MLX hand-written VJP (fused=False) and the fused primitive (fused=True, dfnet4.ops.batch_norm;
its own parity tests are in tests/test_batch_norm_op.py)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from dfnet4 import _extension
from dfnet4.model.batchnorm import BatchNorm

# Outputs agree to float32 rounding (~1e-7 relative). Weight gradients are float32 sums over every
# position, which both implementations round differently: at the larger shape the two differ by
# ~2e-5 of the largest entry and each is ~2e-5 from float64 (checked below), so 1e-4 for those.
RTOL, RTOL_SUM = 1e-5, 1e-4

FUSED = pytest.mark.parametrize("fused", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext is not built")),
], ids=["mlx", "fused"])


def _run(module, weight, bias, x, cotangent, apply=lambda m, x: m(x)):
    module.train()
    module.running_mean = mx.zeros(x.shape[-1])
    module.running_var = mx.ones(x.shape[-1])

    def f(w, b, x):
        module.weight, module.bias = w, b
        return apply(module, x)

    (y,), grads = mx.vjp(f, [weight, bias, x], [cotangent])
    return [y, *grads, module.running_mean, module.running_var]


def _rel(a, b):
    return float(mx.abs(a - b).max() / (mx.abs(b).max() + 1e-30))


@FUSED
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (3, 4, 6), (4, 3), (4, 50, 24, 16)])
def test_matches_mlx_batchnorm_in_training(shape, fused):
    mx.random.seed(7)
    c = shape[-1]
    x = mx.random.normal(shape) * 3 + 1.5  # an offset mean, as after a conv
    weight, bias, cot = mx.random.normal((c,)), mx.random.normal((c,)), mx.random.normal(shape)
    ours = _run(BatchNorm(c, fused=fused), weight, bias, x, cot)
    theirs = _run(nn.BatchNorm(c), weight, bias, x, cot)
    names = ("y", "d_weight", "d_bias", "d_x", "running_mean", "running_var")
    for name, a, b in zip(names, ours, theirs):
        assert _rel(a, b) < (RTOL_SUM if name in ("d_weight", "d_bias") else RTOL), name


@FUSED
def test_gradients_against_float64(fused):
    mx.random.seed(8)
    shape, c, eps = (4, 30, 10, 8), 8, 1e-5
    x = mx.random.normal(shape) * 2 - 3
    weight, bias, cot = mx.random.normal((c,)), mx.random.normal((c,)), mx.random.normal(shape)
    _, dw, db, dx, _, _ = _run(BatchNorm(c, fused=fused), weight, bias, x, cot)
    xn, g, w = (np.array(a, dtype=np.float64) for a in (x, cot, weight))
    axes = (0, 1, 2)
    n = xn.size // c
    xhat = (xn - xn.mean(axes)) / np.sqrt(xn.var(axes) + eps)
    dw_ref, db_ref = (g * xhat).sum(axes), g.sum(axes)
    dx_ref = w / np.sqrt(xn.var(axes) + eps) / n * (n * g - db_ref - xhat * dw_ref)
    for ours, ref in ((dw, dw_ref), (db, db_ref), (dx, dx_ref)):
        assert np.abs(np.array(ours) - ref).max() / np.abs(ref).max() < 1e-5


def test_eval_mode_uses_running_statistics():
    mx.random.seed(9)
    ours, theirs = BatchNorm(5), nn.BatchNorm(5)
    for m in (ours, theirs):
        m.running_mean, m.running_var = mx.arange(5.0), mx.arange(1.0, 6.0)
        m.eval()
    x = mx.random.normal((3, 4, 5))
    assert _rel(ours(x), theirs(x)) == 0.0


@FUSED
def test_one_value_per_channel_is_refused(fused):
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm(3, fused=fused)(mx.zeros((1, 3)))


def test_vjp_includes_the_mean_and_variance_outputs():
    """batch_norm_train's VJP against autodiff of the same three outputs written in plain MLX."""
    from dfnet4.model.batchnorm import batch_norm_train

    mx.random.seed(10)
    x = mx.random.normal((3, 7, 4)) + 0.5
    weight, bias, eps = mx.random.normal((4,)), mx.random.normal((4,)), mx.array(1e-5)
    cots = [mx.random.normal((3, 7, 4)), mx.random.normal((4,)), mx.random.normal((4,))]

    def plain(x, w, b):
        mean = mx.mean(x, axis=(0, 1))
        var = mx.var(x, axis=(0, 1))
        return (x - mean) * mx.rsqrt(var + eps) * w + b, mean, var

    _, ours = mx.vjp(lambda x, w, b: batch_norm_train(x, w, b, eps), [x, weight, bias], cots)
    _, ref = mx.vjp(plain, [x, weight, bias], cots)
    for a, b in zip(ours, ref):
        assert _rel(a, b) < RTOL


@FUSED
def test_relu_variant_matches_batchnorm_then_relu(fused):
    mx.random.seed(12)
    shape, c = (4, 30, 10, 8), 8
    x = mx.random.normal(shape) * 2 + 1
    weight, bias, cot = mx.random.normal((c,)), mx.random.normal((c,)), mx.random.normal(shape)
    ours_mod, ref_mod = BatchNorm(c, fused=fused), nn.BatchNorm(c)
    ours = _run(ours_mod, weight, bias, x, cot, apply=lambda m, x: m(x, relu=True))
    theirs = _run(ref_mod, weight, bias, x, cot, apply=lambda m, x: nn.relu(m(x)))
    results = (ours[:4], theirs[:4])
    for name, a, b in zip(("y", "d_weight", "d_bias", "d_x"), *results):
        assert _rel(a, b) < RTOL_SUM, name
    if fused:  # its statistics are rounded differently (compared above); eval mode must then agree exactly
        ref_mod.running_mean, ref_mod.running_var = ours_mod.running_mean, ours_mod.running_var
    ours_mod.eval()
    ref_mod.eval()
    assert _rel(ours_mod(x, relu=True), nn.relu(ref_mod(x))) == 0.0
