"""dfnet4.dsp.real_fft: every output and gradient equal to MLX's autodiff of the plain ops (to the
bit: the weights multiply float32 views instead of complex64 values, the same products), the
gradients also against central differences of the same functions in float64 numpy, under
mx.compile, on non-contiguous inputs, and bad arguments refused."""

import mlx.core as mx
import numpy as np
import pytest

from dfnet4.dsp import real_fft

SHAPES = [(7,), (3, 5, 16), (2, 4, 15), (2, 3, 960), (1, 2, 961)]  # even and odd lengths


def _random_complex(shape, seed):
    rng = np.random.default_rng(seed)
    return mx.array((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64))


def _equal(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and mx.array_equal(a, b).item()


def _plain_rfft(x):
    return mx.fft.rfft(x, axis=-1)


@pytest.mark.parametrize("shape", SHAPES)
def test_rfft_matches_mlx(shape):
    n = shape[-1]
    x = mx.random.normal(shape, key=mx.random.key(n))
    cot = _random_complex((*shape[:-1], n // 2 + 1), n)
    (out, ), (grad, ) = mx.vjp(real_fft.rfft, [x], [cot])
    (ref_out, ), (ref_grad, ) = mx.vjp(_plain_rfft, [x], [cot])
    assert _equal(out, ref_out) and _equal(grad, ref_grad)


@pytest.mark.parametrize("shape", SHAPES)
def test_irfft_matches_mlx(shape):
    n = shape[-1]
    spec = _random_complex((*shape[:-1], n // 2 + 1), n)
    cot = mx.random.normal(shape, key=mx.random.key(n + 1))
    (out, ), (grad, ) = mx.vjp(lambda s: real_fft.irfft(s, n), [spec], [cot])
    (ref_out, ), (ref_grad, ) = mx.vjp(lambda s: mx.fft.irfft(s, n=n, axis=-1), [spec], [cot])
    assert _equal(out, ref_out) and _equal(grad, ref_grad)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 481)])
def test_conversions_match_mlx(shape):
    pairs = mx.random.normal((*shape, 2), key=mx.random.key(3))
    spec = _random_complex(shape, 4)
    (c, ), (g, ) = mx.vjp(real_fft.as_complex, [pairs], [spec])
    (rc, ), (rg, ) = mx.vjp(lambda p: p[..., 0] + 1j * p[..., 1], [pairs], [spec])
    assert _equal(c, rc) and _equal(g, rg)
    (p, ), (g, ) = mx.vjp(real_fft.as_pairs, [spec], [pairs])
    (rp, ), (rg, ) = mx.vjp(lambda s: mx.stack([mx.real(s), mx.imag(s)], axis=-1), [spec], [pairs])
    assert _equal(p, rp) and _equal(g, rg)


def _central_differences(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("n", [8, 9])
def test_gradients_against_float64_differences(n):
    """A real loss through the synthesis (pairs -> complex -> irfft) and the analysis (rfft ->
    pairs), differentiated here in float32 and by central differences in float64 numpy."""
    rng = np.random.default_rng(n)
    pairs = rng.standard_normal((2, n // 2 + 1, 2))
    signal = rng.standard_normal((2, n))
    w_time, w_freq = rng.standard_normal((2, n)), rng.standard_normal((2, n // 2 + 1, 2))

    def synthesis_np(p):
        return np.sum(w_time * np.fft.irfft(p[..., 0] + 1j * p[..., 1], n=n) ** 2)

    def analysis_np(x):
        s = np.fft.rfft(x)
        return np.sum(w_freq * np.stack([s.real, s.imag], axis=-1) ** 2)

    def synthesis(p):
        return mx.sum(mx.array(w_time, mx.float32) * real_fft.irfft(real_fft.as_complex(p), n) ** 2)

    def analysis(x):
        return mx.sum(mx.array(w_freq, mx.float32) * real_fft.as_pairs(real_fft.rfft(x)) ** 2)

    # The DC (and, n even, Nyquist) bins' imaginary parts do not reach a real signal: both sides
    # give them 0 (np.fft.irfft ignores them).
    for f, f_np, x in ((synthesis, synthesis_np, pairs), (analysis, analysis_np, signal)):
        grad = np.array(mx.grad(f)(mx.array(x, mx.float32)))
        expected = _central_differences(f_np, x)
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_compiled_and_non_contiguous():
    x = mx.random.normal((16, 3, 2), key=mx.random.key(5))  # transposed below: not contiguous
    view = x.transpose(1, 0, 2)[..., 0]                      # (3, 16), strided

    def loss(v):
        spec = real_fft.rfft(v)
        pairs = real_fft.as_pairs(spec).transpose(1, 0, 2)    # a strided view into the conversion
        return mx.sum(real_fft.irfft(real_fft.as_complex(pairs.transpose(1, 0, 2)), 16) * v) + mx.sum(pairs**2)

    def plain(v):
        spec = mx.fft.rfft(v, axis=-1)
        pairs = mx.stack([mx.real(spec), mx.imag(spec)], axis=-1)
        return mx.sum(mx.fft.irfft(pairs[..., 0] + 1j * pairs[..., 1], n=16, axis=-1) * v) + mx.sum(pairs**2)

    value, grad = mx.value_and_grad(loss)(view)
    ref_value, ref_grad = mx.value_and_grad(plain)(view)
    c_value, c_grad = mx.compile(mx.value_and_grad(loss))(view)
    assert _equal(value, ref_value) and _equal(grad, ref_grad)
    np.testing.assert_allclose(np.array(c_value), np.array(ref_value), rtol=1e-6)
    np.testing.assert_allclose(np.array(c_grad), np.array(ref_grad), rtol=1e-5, atol=1e-5)


def test_other_float_dtypes_follow_mlx():
    pairs = mx.random.normal((3, 5, 2), key=mx.random.key(6)).astype(mx.float16)
    c = real_fft.as_complex(pairs)
    assert c.dtype == mx.complex64
    grad = mx.grad(lambda p: mx.sum(mx.abs(real_fft.as_complex(p))))(pairs)
    assert grad.dtype == mx.float16 and grad.shape == pairs.shape


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: real_fft.as_complex(mx.zeros((4, 3))), "last axis of 2"),
        (lambda: real_fft.as_complex(mx.zeros(())), "last axis of 2"),
        (lambda: real_fft.as_pairs(mx.zeros((4, 2))), "complex64"),
        (lambda: real_fft.rfft(mx.zeros((4, 0))), "non-empty last axis"),
        (lambda: real_fft.irfft(mx.zeros((4, 5)), 8), "complex64"),
        (lambda: real_fft.irfft(mx.zeros((4, 4), mx.complex64), 8), "n // 2 \\+ 1 = 5"),
        (lambda: real_fft.irfft(mx.zeros((4, 5), mx.complex64), 0), "positive int"),
        (lambda: real_fft.irfft(mx.zeros((4, 5), mx.complex64), 8.0), "positive int"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
