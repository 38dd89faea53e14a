"""The deep-filter operation: a complex FIR filter over time per frequency bin."""

from __future__ import annotations

import mlx.core as mx


def deep_filter(spec: mx.array, coefs: mx.array, lookahead: int, history: mx.array | None = None) -> mx.array:
    """y_t = sum_n X_{t + n - (order - 1 - lookahead)} * c_{t, n} (complex products), as DeepFilterNet.

    spec: (B, T, F, 2), the bins to filter; coefs: (B, T, F, order, 2).
    history: optional (B, order - 1, F, 2) frames that precede `spec` when filtering a stream
    piecewise: then `spec` holds T + lookahead frames and the first `order - 1 - lookahead`
    history frames and T outputs are used. Without history, frames outside the signal are zero.
    Returns (B, T, F, 2). One gather-free sum over `order` shifted views: no per-frame loop.
    """
    if coefs.ndim != 5 or coefs.shape[-1] != 2:
        raise ValueError(f"deep_filter: coefs must have shape (batch, frames, freqs, order, 2), got {tuple(coefs.shape)}")
    if spec.ndim != 4 or spec.shape[-1] != 2 or spec.shape[0] != coefs.shape[0] or spec.shape[2] != coefs.shape[2]:
        raise ValueError(
            f"deep_filter: spec must have shape ({coefs.shape[0]}, frames, {coefs.shape[2]}, 2) to match coefs, "
            f"got {tuple(spec.shape)}"
        )
    order = coefs.shape[-2]
    t = coefs.shape[1]
    past = order - 1 - lookahead
    if past < 0:
        raise ValueError(f"deep_filter: lookahead={lookahead} must be < order={order}")
    if history is None:
        if spec.shape[1] != t:
            raise ValueError(f"deep_filter: spec has {spec.shape[1]} frames, coefs {t}")
        padded = mx.pad(spec, [(0, 0), (past, lookahead), (0, 0), (0, 0)])
    else:
        if spec.shape[1] != t + lookahead:
            raise ValueError(f"deep_filter: with history, spec needs {t + lookahead} frames, got {spec.shape[1]}")
        padded = mx.concatenate([history[:, history.shape[1] - past :], spec], axis=1)
    # windows[b, t, f, n] = padded[b, t + n, f]
    win = mx.stack([padded[:, n : n + t] for n in range(order)], axis=3)
    sr, si = win[..., 0], win[..., 1]
    cr, ci = coefs[..., 0], coefs[..., 1]
    re = mx.sum(sr * cr - si * ci, axis=3)
    im = mx.sum(sr * ci + si * cr, axis=3)
    return mx.stack([re, im], axis=-1)
