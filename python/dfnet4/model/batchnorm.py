"""BatchNorm for training: the fused primitive (dfnet4.ops.batch_norm), or in pure MLX a hand-written
training-mode VJP (same parameters, state and results as nn.BatchNorm).

mlx.nn.BatchNorm in training computes the variance twice (biased for normalising, unbiased for the
running statistic) and leaves autodiff to differentiate mean, var, subtract, rsqrt, scale and
shift one op at a time: on the CPU, where every op is a pass over a (batch, time, freq, channels)
array, that made BatchNorm as expensive as the convolution it follows. Here the forward is one
mean, one centred variance and one scale-and-shift, and the VJP is two channel reductions plus
a few passes with per-channel constants: dx = k1*dy - c*(x - mean) + k3.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from dfnet4.ops import _auto
from dfnet4.ops.batch_norm import batch_norm


def _stats_axes(x: mx.array) -> tuple[int, ...]:
    return tuple(range(x.ndim - 1))


def _forward(x, weight, bias, eps):
    axes = _stats_axes(x)
    mean = mx.mean(x, axis=axes)
    xc = x - mean
    var = mx.mean(xc * xc, axis=axes)
    scale = weight * mx.rsqrt(var + eps)
    return xc * scale + bias, mean, var


def _backward(x, weight, eps, dy, dmean, dvar, mean, var):
    axes = _stats_axes(x)
    n = math.prod(x.shape[:-1])
    inv = mx.rsqrt(var + eps)
    xc = x - mean  # centred first: sum(dy * x) - mean * sum(dy) cancels badly when |mean| >> std
    db = mx.sum(dy, axis=axes)
    dw = inv * mx.sum(dy * xc, axis=axes)  # sum(dy * xhat), xhat = xc * inv
    k1 = weight * inv
    # d/dx of y through mean and var, plus the cotangents of the mean and var outputs themselves
    c = k1 * inv * dw / n - 2.0 * dvar / n  # coefficient of xc
    dx = dy * k1 - xc * c + (dmean - k1 * db) / n
    return dx, dw, db, mx.zeros_like(eps)


@mx.custom_function
def batch_norm_train(x: mx.array, weight: mx.array, bias: mx.array, eps: mx.array):
    """(y, mean, biased var) over every axis but the last; eps is a 0-d array (custom_function
    arguments are arrays)."""
    return _forward(x, weight, bias, eps)


@batch_norm_train.vjp
def _batch_norm_train_vjp(primals, cotangents, outputs):
    x, weight, _, eps = primals
    dy, dmean, dvar = cotangents
    return _backward(x, weight, eps, dy, dmean, dvar, *outputs[1:])


@mx.custom_function
def batch_norm_relu_train(x: mx.array, weight: mx.array, bias: mx.array, eps: mx.array):
    """(relu(y), mean, biased var): the normalised values before the ReLU are never kept."""
    y, mean, var = _forward(x, weight, bias, eps)
    return mx.maximum(y, 0), mean, var


@batch_norm_relu_train.vjp
def _batch_norm_relu_train_vjp(primals, cotangents, outputs):
    x, weight, _, eps = primals
    dy, dmean, dvar = cotangents
    out, mean, var = outputs
    return _backward(x, weight, eps, mx.where(out > 0, dy, 0), dmean, dvar, mean, var)


class BatchNorm(nn.BatchNorm):
    """nn.BatchNorm (same fields and checkpoints). In training mode it runs the fused primitive
    (`dfnet4.ops.batch_norm`) when the extension is available, else `batch_norm_train` above;
    `relu=True` returns relu(batchnorm(x)) through one backward either way.

    `fused`: None = the fused primitive when the extension is importable and has kernels for the
    default device (the CPU; a GPU in Metal builds: dfnet4.ops._auto); True requires it; False keeps the pure-MLX path. A plain attribute
    (not a parameter): flip it on a built model to compare the two paths."""

    def __init__(self, num_features: int, *args, fused: bool | None = None, **kwargs):
        super().__init__(num_features, *args, **kwargs)
        self.fused = _auto.check(fused, "BatchNorm")

    def __call__(self, x: mx.array, relu: bool = False) -> mx.array:
        if not self.training or "weight" not in self or x.ndim < 2:
            y = super().__call__(x)
            return nn.relu(y) if relu else y
        n = math.prod(x.shape[:-1])
        if n < 2:
            raise ValueError("BatchNorm training requires more than one value per channel.")
        if _auto.use_fused(self.fused):
            y, mean, var = batch_norm(x, self.weight, self.bias, self.eps, relu)
        else:
            fn = batch_norm_relu_train if relu else batch_norm_train
            y, mean, var = fn(x, self.weight, self.bias, mx.array(self.eps, x.dtype))
        if self.track_running_stats:
            mu = self.momentum
            mean, var = mx.stop_gradient(mean), mx.stop_gradient(var)
            self.running_mean = (1 - mu) * self.running_mean + mu * mean
            self.running_var = (1 - mu) * self.running_var + mu * var * (n / (n - 1))
        return y
