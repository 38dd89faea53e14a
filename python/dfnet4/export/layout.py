"""How DfNet4's parameters map to DeepFilterNet's ONNX graphs, both ways (import: dfnet4.convert,
export: dfnet4.export.graphs), so the two directions cannot drift apart.

- Convolutions: ours are channels-last, weight (out, kt, kf, in / groups); ONNX/PyTorch
  (out, in / groups, kt, kf). Transposed convs: ours (ch, 1, kf, 1), ONNX (ch, 1, 1, kf).
- GRUs: ours are mlx.nn.GRU's (gates r, z, n; Wx (3H, I), Wh (3H, H), b (3H,) with the input and
  recurrent biases of r and z merged, bhn (H,) the recurrent bias of n); ONNX GRU (gates z, r, h;
  W (1, 3H, I), R (1, 3H, H), B (1, 6H) = input biases then recurrent biases; linear_before_reset=1,
  the same equations).
- BatchNorm: the ONNX export folds it into the block's last conv (weight x scale, bias).
"""

from __future__ import annotations

import numpy as np


def conv_from_onnx(w: np.ndarray) -> np.ndarray:
    """ONNX (out, in/g, kt, kf) -> ours (out, kt, kf, in/g)."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1))


def conv_to_onnx(w: np.ndarray) -> np.ndarray:
    """ours (out, kt, kf, in/g) -> ONNX (out, in/g, kt, kf)."""
    return np.ascontiguousarray(w.transpose(0, 3, 1, 2))


def gru_from_onnx(w: np.ndarray, r: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX GRU (gates z, r, h; linear_before_reset=1) -> mlx.nn.GRU (gates r, z, n)."""
    wz, wr, wh = np.split(w[0], 3)
    rz, rr, rh = np.split(r[0], 3)
    wbz, wbr, wbh, rbz, rbr, rbh = np.split(b[0], 6)
    return {
        "Wx": np.concatenate([wr, wz, wh]),
        "Wh": np.concatenate([rr, rz, rh]),
        "b": np.concatenate([wbr + rbr, wbz + rbz, wbh]),
        "bhn": rbh,
    }


def gru_to_onnx(Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, bhn: np.ndarray) -> tuple[np.ndarray, ...]:
    """mlx.nn.GRU (r, z, n) -> ONNX GRU W, R, B (z, r, h); merged biases go to the input side."""
    xr, xz, xn = np.split(Wx, 3)
    hr, hz, hn = np.split(Wh, 3)
    br, bz, bn = np.split(b, 3)
    w = np.concatenate([xz, xr, xn])[None]
    r = np.concatenate([hz, hr, hn])[None]
    bias = np.concatenate([bz, br, bn, np.zeros_like(bz), np.zeros_like(br), bhn])[None]
    return w, r, bias


def fold_batchnorm(w: np.ndarray, weight, bias, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight (out, ...) followed by BatchNorm (eval) -> (scaled weight, bias)."""
    scale = np.asarray(weight, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    shift = np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * scale
    folded = np.asarray(w, np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))
    return folded.astype(np.float32), shift.astype(np.float32)
