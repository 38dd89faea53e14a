"""DeepFilterNet3's convolution blocks, channels-last (batch, time, freq, channels).

Time is causal: a kernel of kt frames sees the current and kt - 1 previous frames. Offline the
previous frames of the first one are zeros; in streaming they are the `history` a block returns.
Convolutions are one GEMM each over gathered patches or before summing shifted taps (kernels are at
most 3 x 3 / 5 x 1 here), with a separable block's 1x1 conv folded in: on the CPU this is far faster
than MLX's grouped conv2d or per-tap elementwise sums, forward and backward (see conv_ops).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from dfnet4.model.batchnorm import BatchNorm
from dfnet4.model.conv_ops import causal_tap_sum, im2col, tap_sum
from dfnet4.ops import _auto
from dfnet4.ops.depthwise_conv import depthwise_conv


def _uniform(shape: tuple[int, ...], fan_in: int) -> mx.array:
    bound = 1.0 / math.sqrt(fan_in)
    return mx.random.uniform(-bound, bound, shape)


class GroupedConv(nn.Module):
    """Conv2d (kt, kf), freq stride, `groups`, no bias. weight (out, kt, kf, in // groups) as mx.conv2d.

    Computed as one GEMM with the taps' block-diagonal matrices, either on gathered patches
    (im2col, when few input channels x taps) or before summing shifted taps (tap_sum, when few
    output channels x taps); see conv_ops. A following 1x1 conv can be folded into that GEMM.
    A depthwise (1, K) conv (groups = channels, DFN3's separable blocks) instead runs the fused
    depthwise_conv primitive, then the 1x1 conv as a GEMM on its output, when `fused` (None: where
    the extension has kernels for the default device, dfnet4.ops._auto; a plain attribute, flip it
    to compare).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int], fstride: int = 1, groups: int = 1,
                 fused: bool | None = None):
        super().__init__()
        self.fused = _auto.check(fused, "GroupedConv")
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"GroupedConv: in_ch={in_ch}, out_ch={out_ch} not divisible by groups={groups}")
        self.in_ch, self.out_ch, self.groups, self.fstride = in_ch, out_ch, groups, fstride
        self.kernel = tuple(kernel)
        kt, kf = self.kernel
        self.weight = _uniform((out_ch, kt, kf, in_ch // groups), kt * kf * in_ch // groups)

    def tap_matrices(self) -> mx.array:
        """(kt * kf, in_ch, out_ch): every tap's full in -> out matrix (block-diagonal over groups)."""
        kt, kf = self.kernel
        g, taps = self.groups, kt * kf
        cig, cog = self.in_ch // g, self.out_ch // g
        w = self.weight.reshape(g, cog, taps, cig).transpose(2, 0, 3, 1)  # (taps, g, cig, cog)
        if g == 1:
            return w.reshape(taps, cig, cog)
        eye = mx.eye(g, dtype=w.dtype)
        return (w[:, :, :, None, :] * eye[None, :, None, :, None]).reshape(taps, self.in_ch, self.out_ch)

    def __call__(
        self, x: mx.array, history: mx.array | None = None, pointwise: mx.array | None = None
    ) -> tuple[mx.array, mx.array | None]:
        """`pointwise` (out_ch, n): a 1x1 conv applied to the result, folded into the GEMM."""
        kt, kf = self.kernel
        b, t, f, _ = x.shape
        n_out = self.out_ch if pointwise is None else pointwise.shape[1]
        if history is None and kf == 1 and kt > 1 and t >= kt and self.fstride == 1 and self.in_ch > n_out:
            return self._time_taps(x, pointwise), x[:, -(kt - 1):]
        if kt > 1:
            past = mx.zeros((b, kt - 1, f, self.in_ch), x.dtype) if history is None else history
            x = mx.concatenate([past, x], axis=1)
            history = x[:, -(kt - 1) :]
        depthwise = self.in_ch == self.groups == self.out_ch
        if kt * kf == 1 and self.fstride == 1 and depthwise and pointwise is None:
            return x * self.weight[:, 0, 0, 0], history  # depthwise 1x1: a per-channel scale
        if depthwise and kt == 1 and kf > 1 and _auto.use_fused(self.fused):
            y = depthwise_conv(x, self.weight[:, 0, :, 0].T, self.fstride)  # taps (kf, channels)
            return (y if pointwise is None else y @ pointwise), history
        fp = kf // 2
        if fp:
            x = mx.pad(x, [(0, 0), (0, 0), (fp, fp), (0, 0)])
        s, taps = self.fstride, kt * kf
        w = self._gemm_weights(pointwise)
        fo = (x.shape[2] - kf) // s + 1
        if taps == 1 and s == 1:
            return x @ w[0], history
        if self.in_ch * fo <= n_out * x.shape[2]:  # gathered patches are the smaller intermediate
            return im2col(x, kt, kf, s) @ w.reshape(taps * self.in_ch, n_out), history
        return tap_sum(self._tap_products(x, w), kt, kf, s), history

    def _gemm_weights(self, pointwise: mx.array | None) -> mx.array:
        """(taps, in_ch, n): the tap matrices with the following 1x1 conv folded in."""
        w = self.tap_matrices()
        return w if pointwise is None else w @ pointwise

    def _tap_products(self, x: mx.array, w: mx.array) -> mx.array:
        """x times every tap's matrix in one GEMM -> (B, T, F, taps, n), summed over taps later."""
        taps, n_out = w.shape[0], w.shape[-1]
        y = x @ w.transpose(1, 0, 2).reshape(self.in_ch, taps * n_out)
        return y.reshape(*y.shape[:3], taps, n_out)

    def _time_taps(self, x: mx.array, pointwise: mx.array | None) -> mx.array:
        """A (kt, 1) conv from a fresh start with fewer outputs than inputs (DFN3's df_convp): one GEMM
        on the unpadded input, then the causal tap sum (conv_ops), so the input is never copied."""
        return causal_tap_sum(self._tap_products(x, self._gemm_weights(pointwise)), self.kernel[0])


class DepthwiseTransposedConv(nn.Module):
    """ConvTranspose2d (1, 3), freq stride 2, padding 1, output_padding 1, groups = channels: F -> 2F.

    out[2m] = w1 x[m];  out[2m + 1] = w2 x[m] + w0 x[m + 1]   (x[F] = 0). weight (ch, 1, 3, 1).
    `fused` (None: where the extension has kernels for the device, dfnet4.ops._auto): the fused
    depthwise_conv primitive, then the pointwise conv as one GEMM at 2F; otherwise three GEMMs at F
    with the taps folded in.
    """

    def __init__(self, ch: int, fused: bool | None = None):
        super().__init__()
        self.fused = _auto.check(fused, "DepthwiseTransposedConv")
        self.ch = ch
        self.weight = _uniform((ch, 1, 3, 1), 3)

    def __call__(self, x: mx.array, pointwise: mx.array | None = None) -> mx.array:
        """`pointwise` (ch, n): a following 1x1 conv, folded into one GEMM per tap."""
        w = self.weight[:, 0, :, 0]  # (ch, 3)
        if _auto.use_fused(self.fused):
            y = depthwise_conv(x, w.T, stride=2, padding=1, transposed=True, output_padding=1)
            return y if pointwise is None else y @ pointwise
        b, t, f, _ = x.shape
        shift = lambda v: mx.pad(v[:, :, 1:], [(0, 0), (0, 0), (0, 1), (0, 0)])  # noqa: E731  v[m + 1], 0 past the end
        if pointwise is None:
            even = x * w[:, 1]
            odd = x * w[:, 2] + shift(x) * w[:, 0]
        else:  # diag(w_k) @ pointwise per tap: three GEMMs at F instead of elementwise taps + a GEMM at 2F
            taps = [w[:, k, None] * pointwise for k in range(3)]
            even = x @ taps[1]
            odd = x @ taps[2] + shift(x @ taps[0])
        return mx.stack([even, odd], axis=3).reshape(b, t, 2 * f, even.shape[-1])


class ConvNormAct(nn.Module):
    """DeepFilterNet's Conv2dNormAct / ConvTranspose2dNormAct: conv [+ 1x1 conv] + BatchNorm + activation.

    `separable`: grouped conv with gcd(in, out) groups followed by a 1x1 conv (as DFN3 builds it;
    dropped when the groups would be 1 or the kernel is 1x1).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: tuple[int, int],
        fstride: int = 1,
        separable: bool = True,
        transposed: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        groups = math.gcd(in_ch, out_ch) if separable else 1
        # as DFN3: the 1x1 conv follows only a grouped, non-1x1 conv (a grouped 1x1 stays alone)
        pointwise = groups > 1 and (transposed or max(kernel) > 1)
        self.time_kernel = kernel[0]
        self.in_ch = in_ch
        if transposed:
            if in_ch != out_ch or kernel != (1, 3) or fstride != 2 or groups != in_ch:
                raise ValueError("ConvNormAct: transposed blocks are depthwise (1, 3) with fstride 2")
            self.conv = DepthwiseTransposedConv(in_ch)
        else:
            self.conv = GroupedConv(in_ch, out_ch, kernel, fstride, groups)
        self.pointwise = GroupedConv(out_ch, out_ch, (1, 1)) if pointwise else None
        self.norm = BatchNorm(out_ch)
        self.activation = activation

    def __call__(self, x: mx.array, history: mx.array | None = None) -> tuple[mx.array, mx.array | None]:
        pw = None if self.pointwise is None else self.pointwise.tap_matrices()[0]  # 1x1: one (in, out) matrix
        if isinstance(self.conv, DepthwiseTransposedConv):
            x = self.conv(x, pointwise=pw)
        else:
            x, history = self.conv(x, history, pointwise=pw)
        if self.activation == "relu":
            return self.norm(x, relu=True), history
        x = mx.sigmoid(self.norm(x))
        return x, history
