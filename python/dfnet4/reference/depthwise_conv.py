"""Pure-MLX depthwise frequency conv and its transpose: the oracle for dfnet4.ops.depthwise_conv.

K shifted (strided) slices of the zero-padded input, each times its tap, summed; the transposed
conv is the same on the input with stride - 1 zeros put between its values and the taps reversed
(the textbook form of a transposed convolution). MLX's autodiff differentiates them.
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4.ops.depthwise_conv import output_size


def depthwise_conv(x, weight, stride=1, padding=None, transposed=False, output_padding=0):
    """Reference; same signature and semantics as `dfnet4.ops.depthwise_conv`."""
    ct = mx.float64 if mx.float64 in (x.dtype, weight.dtype) else mx.float32
    k, c = weight.shape
    pad = k // 2 if padding is None else padding
    f = x.shape[-2]
    out = output_size(f, k, stride, pad, transposed, output_padding)
    xc, w = x.astype(ct), weight.astype(ct)
    lead = [(0, 0)] * (x.ndim - 2)
    if transposed:
        if stride > 1:  # x[m] at position stride * m, zeros between
            zeros = [mx.zeros_like(xc)] * (stride - 1)
            xc = mx.stack([xc] + zeros, axis=-2).reshape(*x.shape[:-2], f * stride, c)[..., : (f - 1) * stride + 1, :]
        xc = mx.pad(xc, lead + [(k - 1 - pad, k - 1 - pad + output_padding), (0, 0)])
        taps, step = [w[k - 1 - j] for j in range(k)], 1
    else:
        xc = mx.pad(xc, lead + [(pad, pad + stride), (0, 0)])
        taps, step = [w[j] for j in range(k)], stride
    y = None
    for j, tap in enumerate(taps):
        term = xc[..., j : j + step * (out - 1) + 1 : step, :] * tap
        y = term if y is None else y + term
    return y.astype(x.dtype)
