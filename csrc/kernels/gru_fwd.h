// GRU recurrence kernel bodies, forward, shared by the CPU primitive and the Metal wrappers
// (metal/gru.metal; launch plan: csrc/gru_launch.h). Backward: gru_bwd.h.
// Equations (mlx.nn.GRU / PyTorch), gate order r, z, n; gx = x Wx^T + b is precomputed by MLX:
//   r = sigmoid(gx_r + Wh_r h), z = sigmoid(gx_z + Wh_z h), hn = Wh_n h + bhn,
//   n = tanh(gx_n + r * hn),   h' = (1 - z) * n + z * h.
// Saved per step for the backward ("gates", last axis 4H): r, z, n, hn.
#pragma once

#include "kernels/defines.h"
#include "kernels/fast_math.h"
#include "kernels/gru_params.h"

namespace dfk {

// One hidden unit of one step, given the three hidden-to-hidden sums (hn already includes bhn).
template <typename T>
struct GruCellOut {
  T r, z, n, h;
};

template <typename T>
DF_INLINE GruCellOut<T> gru_cell_forward(T gx_r, T gx_z, T gx_n, T gh_r, T gh_z, T hn, T h_prev) {
  GruCellOut<T> o;
  o.r = fastmath::sigmoid(gx_r + gh_r);
  o.z = fastmath::sigmoid(gx_z + gh_z);
  o.n = fastmath::tanh(gx_n + o.r * hn);
  o.h = (T(1) - o.z) * o.n + o.z * h_prev;
  return o;
}

// ---- Step bodies of the Metal kernels ----
// Each lane of a SIMD group sums a strided slice of the three length-H products of unit j; the
// caller reduces them across the group and lane 0 calls gru_forward_finish.
// Layouts (all row-major, contiguous): gx, gates (B, T, 3H / 4H), hs (B, T, H), Wh (3H, H), h0 (B, H).

// Lane partial sums of (Wh_r h, Wh_z h, Wh_n h) for unit j, h = h_{t-1}[b].
template <typename T>
DF_INLINE void gru_forward_partials(
    DF_DEVICE const T* h_prev, DF_DEVICE const T* Wh, int H, int j, int lane, int lanes,
    DF_THREAD T& pr, DF_THREAD T& pz, DF_THREAD T& pn) {
  pr = T(0);
  pz = T(0);
  pn = T(0);
  DF_DEVICE const T* wr = Wh + (long)j * H;
  DF_DEVICE const T* wz = Wh + (long)(H + j) * H;
  DF_DEVICE const T* wn = Wh + (long)(2 * H + j) * H;
  for (int k = lane; k < H; k += lanes) {
    T hk = h_prev[k];
    pr += wr[k] * hk;
    pz += wz[k] * hk;
    pn += wn[k] * hk;
  }
}

// Writes h_t[b, j] and the saved gates of step t.
template <typename T>
DF_INLINE void gru_forward_finish(
    DF_DEVICE const T* gx, DF_DEVICE const T* bhn, DF_DEVICE const T* h_prev, DF_DEVICE T* hs,
    DF_DEVICE T* gates, int T_len, int H, int b, int t, int j, T sr, T sz, T sn) {
  long row = (long)b * T_len + t;
  DF_DEVICE const T* g = gx + row * 3 * H;
  T hn = sn + bhn[j];
  GruCellOut<T> o = gru_cell_forward(g[j], g[H + j], g[2 * H + j], sr, sz, hn, h_prev[j]);
  hs[row * H + j] = o.h;
  DF_DEVICE T* s = gates + row * 4 * H;
  s[j] = o.r;
  s[H + j] = o.z;
  s[2 * H + j] = o.n;
  s[3 * H + j] = hn;
}

}  // namespace dfk
