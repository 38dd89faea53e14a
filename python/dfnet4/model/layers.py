"""DeepFilterNet3's convolution blocks, channels-last (batch, time, freq, channels).

Time is causal: a kernel of kt frames sees the current and kt - 1 previous frames. Offline the
previous frames of the first one are zeros; in streaming they are the `history` a block returns.
Convolutions are written as sums of shifted slices (kernels are at most 3 x 3 / 5 x 1 here), which
on the CPU is far faster than MLX's grouped conv2d and is exact.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn


def _uniform(shape: tuple[int, ...], fan_in: int) -> mx.array:
    bound = 1.0 / math.sqrt(fan_in)
    return mx.random.uniform(-bound, bound, shape)


class GroupedConv(nn.Module):
    """Conv2d (kt, kf), freq stride, `groups`, no bias. weight (out, kt, kf, in // groups) as mx.conv2d."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int], fstride: int = 1, groups: int = 1):
        super().__init__()
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"GroupedConv: in_ch={in_ch}, out_ch={out_ch} not divisible by groups={groups}")
        self.in_ch, self.out_ch, self.groups, self.fstride = in_ch, out_ch, groups, fstride
        self.kernel = tuple(kernel)
        kt, kf = self.kernel
        self.weight = _uniform((out_ch, kt, kf, in_ch // groups), kt * kf * in_ch // groups)

    def __call__(self, x: mx.array, history: mx.array | None = None) -> tuple[mx.array, mx.array | None]:
        kt, kf = self.kernel
        b, t, f, _ = x.shape
        if kt > 1:
            past = mx.zeros((b, kt - 1, f, self.in_ch), x.dtype) if history is None else history
            x = mx.concatenate([past, x], axis=1)
            history = x[:, -(kt - 1) :]
        fp = kf // 2
        if fp:
            x = mx.pad(x, [(0, 0), (0, 0), (fp, fp), (0, 0)])
        fo = (f + 2 * fp - kf) // self.fstride + 1
        cig, cog = self.in_ch // self.groups, self.out_ch // self.groups
        taps = [(i, j) for i in range(kt) for j in range(kf)]

        def tap(v: mx.array, i: int, j: int) -> mx.array:
            return v[:, i : i + t, j : j + self.fstride * (fo - 1) + 1 : self.fstride]

        if cig == 1:  # every output reads one input channel: expand, then a depthwise sum of taps
            if cog > 1:
                x = mx.repeat(x, cog, axis=-1)
            out = None
            for i, j in taps:
                term = tap(x, i, j) * self.weight[:, i, j, 0]
                out = term if out is None else out + term
            return out, history
        # grouped/dense: one matmul per group over the taps stacked on the channel axis
        outs = []
        for g in range(self.groups):
            xg = x[..., g * cig : (g + 1) * cig]
            patches = xg if len(taps) == 1 else mx.concatenate([tap(xg, i, j) for i, j in taps], axis=-1)
            w = self.weight[g * cog : (g + 1) * cog].reshape(cog, len(taps) * cig)  # (i, j, c) order
            outs.append(patches @ w.T)
        out = outs[0] if self.groups == 1 else mx.concatenate(outs, axis=-1)
        return out, history


class DepthwiseTransposedConv(nn.Module):
    """ConvTranspose2d (1, 3), freq stride 2, padding 1, output_padding 1, groups = channels: F -> 2F.

    out[2m] = w1 x[m];  out[2m + 1] = w2 x[m] + w0 x[m + 1]   (x[F] = 0). weight (ch, 1, 3, 1).
    """

    def __init__(self, ch: int):
        super().__init__()
        self.ch = ch
        self.weight = _uniform((ch, 1, 3, 1), 3)

    def __call__(self, x: mx.array) -> mx.array:
        w = self.weight[:, 0, :, 0]  # (ch, 3)
        nxt = mx.pad(x[:, :, 1:], [(0, 0), (0, 0), (0, 1), (0, 0)])
        even = x * w[:, 1]
        odd = x * w[:, 2] + nxt * w[:, 0]
        b, t, f, c = x.shape
        return mx.stack([even, odd], axis=3).reshape(b, t, 2 * f, c)


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
        self.norm = nn.BatchNorm(out_ch)
        self.activation = activation

    def __call__(self, x: mx.array, history: mx.array | None = None) -> tuple[mx.array, mx.array | None]:
        if isinstance(self.conv, DepthwiseTransposedConv):
            x = self.conv(x)
        else:
            x, history = self.conv(x, history)
        if self.pointwise is not None:
            x, _ = self.pointwise(x)
        x = self.norm(x)
        x = nn.relu(x) if self.activation == "relu" else mx.sigmoid(x)
        return x, history
