"""dfnet4.model.activations.tanh: the value is mx.tanh's, the gradient (from the output) agrees with
float64's 1 / cosh(x)^2 as closely as MLX's own, under mx.grad and mx.compile."""

import mlx.core as mx
import numpy as np

from dfnet4.model.activations import tanh


def test_tanh_value_and_gradient():
    rng = np.random.default_rng(0)
    # the range DFN3's coefficients see, and the tails where tanh rounds to +-1
    x64 = np.concatenate([rng.standard_normal(10_000) * 2, [0.0, -0.0, 1e-8, 9.0, -9.0, 30.0, -30.0]])
    cot64 = rng.standard_normal(x64.shape)
    x, cot = mx.array(x64, mx.float32), mx.array(cot64, mx.float32)
    (y,), (grad,) = mx.vjp(tanh, [x], [cot])
    (ref_y,), (mlx_grad,) = mx.vjp(mx.tanh, [x], [cot])
    assert mx.array_equal(y, ref_y).item()
    exact = np.asarray(cot, np.float64) / np.cosh(np.asarray(x, np.float64)) ** 2
    err, mlx_err = np.abs(np.array(grad) - exact), np.abs(np.array(mlx_grad) - exact)
    # 1 - y^2 loses the last bits where y is near +-1, 1/cosh^2 where cosh^2 is large: both stay
    # within a few float32 ulps of the cotangent's scale
    scale = np.abs(np.asarray(cot, np.float64))
    assert np.all(err <= 4 * np.finfo(np.float32).eps * scale + 1e-30)
    assert err.max() <= 2 * mlx_err.max()


def test_tanh_compiles_and_keeps_shape():
    x = mx.random.normal((2, 3, 4), key=mx.random.key(1))
    grad = mx.grad(lambda a: mx.sum(tanh(a) * a))(x)
    compiled = mx.compile(mx.grad(lambda a: mx.sum(tanh(a) * a)))(x)
    np.testing.assert_allclose(np.array(compiled), np.array(grad), rtol=1e-6, atol=1e-7)
    assert grad.shape == x.shape and grad.dtype == mx.float32
