"""Patch gathering for the convolutions, with hand-written VJPs.

A small 2-D convolution (kt time taps x kf frequency taps, frequency stride s) is computed as one
GEMM plus one of two re-arrangements:

  im2col   patches[b, t, m, (i, j, c)] = x[b, t + i, s*m + j, c]        (then patches @ W)
  tap_sum  out[b, t, m, c] = sum_(i, j) y[b, t + i, s*m + j, (i, j), c]   (after y = x @ W)

Written with MLX slices, their autodiff gives every tap its own full-size scatter (zeros, then a
slice update) and sums them; on the CPU that was most of the model's backward time. Here each VJP
is built at output resolution instead: taps that land on the same phase (j mod s) of the stride
are summed while small and the phases are interleaved once.
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx


def _tap_slice(v: mx.array, i: int, j: int, t: int, fo: int, s: int) -> mx.array:
    return v[:, i : i + t, j : j + s * (fo - 1) + 1 : s]


def _out_size(tp: int, fp: int, kt: int, kf: int, s: int) -> tuple[int, int]:
    return tp - kt + 1, (fp - kf) // s + 1


def _scatter_sum(taps: list[mx.array], tp: int, fp: int, kt: int, kf: int, s: int) -> mx.array:
    """Adjoint of gathering: taps[i*kf + j] (B, t, fo, C) added at (t + i, s*m + j) of a (B, tp, fp, C) grid."""
    b, t, fo, c = taps[0].shape
    qmax = (kf - 1) // s
    phases = []
    for r in range(s):
        acc = None
        for i in range(kt):
            for j in range(r, kf, s):
                q = j // s  # position s*m + j = s*(m + q) + r: index m + q of phase r
                term = mx.pad(taps[i * kf + j], [(0, 0), (i, kt - 1 - i), (q, qmax - q), (0, 0)])
                acc = term if acc is None else acc + term
        phases.append(mx.zeros((b, tp, fo + qmax, c), taps[0].dtype) if acc is None else acc)
    full = phases[0] if s == 1 else mx.stack(phases, axis=3).reshape(b, tp, (fo + qmax) * s, c)
    n = full.shape[2]  # >= s*(fo - 1) + kf: every position a tap reaches
    if n >= fp:
        return full[:, :, :fp]
    return mx.pad(full, [(0, 0), (0, 0), (0, fp - n), (0, 0)])


def _spread(g: mx.array, i: int, j: int, tp: int, fp: int, s: int) -> mx.array:
    """g (B, t, fo, C) placed at (t + i, s*m + j) of a zero (B, tp, fp, C) grid (one tap, no overlaps)."""
    b, t, fo, c = g.shape
    if s > 1:  # interleave with zeros: g[m] at s*m
        g = mx.stack([g] + [mx.zeros_like(g)] * (s - 1), axis=3).reshape(b, t, fo * s, c)
    g = mx.pad(g, [(0, 0), (i, tp - t - i), (j, max(0, fp - g.shape[2] - j)), (0, 0)])
    return g[:, :, :fp]


@lru_cache(maxsize=None)
def _im2col_fn(kt: int, kf: int, s: int):
    @mx.custom_function
    def im2col(x):
        t, fo = _out_size(x.shape[1], x.shape[2], kt, kf, s)
        taps = [_tap_slice(x, i, j, t, fo, s) for i in range(kt) for j in range(kf)]
        return taps[0] if len(taps) == 1 else mx.concatenate(taps, axis=-1)

    @im2col.vjp
    def im2col_vjp(x, cotangent, output):  # one argument: primals and result are bare arrays
        tp, fp, c = x.shape[1], x.shape[2], x.shape[3]
        n = kt * kf
        taps = [cotangent[..., k * c : (k + 1) * c] for k in range(n)]
        return _scatter_sum(taps, tp, fp, kt, kf, s)

    return im2col


@lru_cache(maxsize=None)
def _tap_sum_fn(kt: int, kf: int, s: int):
    @mx.custom_function
    def tap_sum(y):
        t, fo = _out_size(y.shape[1], y.shape[2], kt, kf, s)
        out = None
        for i in range(kt):
            for j in range(kf):
                term = _tap_slice(y, i, j, t, fo, s)[..., i * kf + j, :]
                out = term if out is None else out + term
        return out

    @tap_sum.vjp
    def tap_sum_vjp(y, cotangent, output):
        tp, fp = y.shape[1], y.shape[2]
        spread = [_spread(cotangent, i, j, tp, fp, s) for i in range(kt) for j in range(kf)]
        return mx.stack(spread, axis=3)

    return tap_sum


@lru_cache(maxsize=None)
def _causal_tap_sum_fn(kt: int):
    h = kt - 1  # tap i reads frame t - (h - i); frames before the first are zeros

    @mx.custom_function
    def causal_tap_sum(y):
        t = y.shape[1]
        main = y[:, h:, :, h]  # frames h.. see every tap
        for i in range(h):
            main = main + y[:, i : t - h + i, :, i]
        head = []  # frames 0..h-1 see taps i >= h - frame
        for f in range(h):
            acc = y[:, :1, :, h - f]
            for i in range(h - f + 1, kt):
                acc = acc + y[:, f - h + i : f - h + i + 1, :, i]
            head.append(acc)
        return mx.concatenate(head + [main], axis=1)

    @causal_tap_sum.vjp
    def causal_tap_sum_vjp(y, cotangent, output):
        # d y[:, u, :, i] = cotangent[:, u + h - i] (zero past the end): shifted views of one padded copy
        t = y.shape[1]
        padded = mx.pad(cotangent, [(0, 0), (0, h), (0, 0), (0, 0)])
        return mx.stack([padded[:, h - i : h - i + t] for i in range(kt)], axis=3)

    return causal_tap_sum


def causal_tap_sum(y: mx.array, kt: int) -> mx.array:
    """y (B, T, F, kt, C) of the unpadded input, T >= kt -> (B, T, F, C): tap i read at frame t - (kt - 1 - i),
    zero before the first frame. tap_sum over time without padding the input first (a full copy of it)."""
    if y.shape[1] < kt:
        raise ValueError(f"causal_tap_sum: needs at least kt={kt} frames, got {y.shape[1]}")
    return _causal_tap_sum_fn(kt)(y)


def im2col(x: mx.array, kt: int, kf: int, s: int) -> mx.array:
    """x (B, tp, fp, C) already padded -> patches (B, tp - kt + 1, (fp - kf) // s + 1, kt*kf*C), (i, j, c) order."""
    return _im2col_fn(kt, kf, s)(x)


def tap_sum(y: mx.array, kt: int, kf: int, s: int) -> mx.array:
    """y (B, tp, fp, kt*kf, C) -> (B, tp - kt + 1, (fp - kf) // s + 1, C): tap (i, j) read at (t + i, s*m + j)."""
    return _tap_sum_fn(kt, kf, s)(y)
