// GRU recurrence kernel bodies, shared by the CPU primitive and the Metal wrappers (metal/gru.metal).
// Equations (mlx.nn.GRU / PyTorch), gate order r, z, n; gx = x Wx^T + b is precomputed by MLX:
//   r = sigmoid(gx_r + Wh_r h), z = sigmoid(gx_z + Wh_z h), hn = Wh_n h + bhn,
//   n = tanh(gx_n + r * hn),   h' = (1 - z) * n + z * h.
// Saved per step for the backward ("gates", last axis 4H): r, z, n, hn.
#pragma once
#include "defines.h"
#include "gate_math.h"
#include "gru_params.h"

// The cell bodies must inline into the CPU's ISA-specific workers (gru_cpu.cpp) to vectorise.
#if defined(__METAL_VERSION__)
#define DFK_GRU_INLINE inline
#else
#define DFK_GRU_INLINE inline __attribute__((always_inline))
#endif

namespace dfk {

// One hidden unit of one step, given the three hidden-to-hidden sums (hn already includes bhn).
template <typename T>
struct GruCellOut {
  T r, z, n, h;
};

template <typename T>
DFK_GRU_INLINE GruCellOut<T> gru_cell_forward(T gx_r, T gx_z, T gx_n, T gh_r, T gh_z, T hn, T h_prev) {
  GruCellOut<T> o;
  o.r = gate_sigmoid(gx_r + gh_r);
  o.z = gate_sigmoid(gx_z + gh_z);
  o.n = gate_tanh(gx_n + o.r * hn);
  o.h = (T(1) - o.z) * o.n + o.z * h_prev;
  return o;
}

// Gradients of one hidden unit of one step, given dh = dL/dh_t (output cotangent + carry).
// da_* are gradients of the gate pre-activations: dgx = (da_r, da_z, da_n) and the gradient of
// gh = Wh h (+ bhn on the n part) is (da_r, da_z, dhn). dh_direct is the part of dL/dh_{t-1} that
// does not pass through Wh.
template <typename T>
struct GruCellGrad {
  T da_r, da_z, da_n, dhn, dh_direct;
};

template <typename T>
DFK_GRU_INLINE GruCellGrad<T> gru_cell_backward(T dh, T r, T z, T n, T hn, T h_prev) {
  GruCellGrad<T> g;
  T dn = dh * (T(1) - z);
  T dz = dh * (h_prev - n);
  g.da_n = dn * (T(1) - n * n);
  T dr = g.da_n * hn;
  g.dhn = g.da_n * r;
  g.da_r = dr * r * (T(1) - r);
  g.da_z = dz * z * (T(1) - z);
  g.dh_direct = dh * z;
  return g;
}

// ---- Step bodies of the Metal kernels (launch plan: csrc/gru_launch.h) ----
// Forward: each lane of a SIMD group sums a strided slice of the three length-H products of unit
// j; the caller reduces them across the group and lane 0 calls gru_forward_finish.
// Layouts (all row-major, contiguous): gx, gates (B, T, 3H / 4H), hs (B, T, H), Wh (3H, H),
// h0 (B, H), dgx/dgh (B, T, 3H), dhs (B, T, H), dh_direct (B, H) scratch.

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

// dgh_{t+1}[b] . Wh[:, j]: the part of dL/dh_t[b, j] that goes through Wh (one thread per (b, j):
// neighbouring j read neighbouring addresses of each row of Wh).
template <typename T>
DF_INLINE T gru_backward_wh_sum(DF_DEVICE const T* dgh_next, DF_DEVICE const T* Wh, int H, int j) {
  T p = T(0);
  for (int c = 0; c < 3 * H; ++c) p += dgh_next[c] * Wh[(long)c * H + j];
  return p;
}

// Step t of the reverse recurrence for (b, j): dh = dhs[b,t,j] + carry; carry = dh_direct of step
// t+1 (read from and then overwritten in the (B, H) scratch: each (b, j) touches only its own slot)
// plus the reduced Wh product. Writes dgx, dgh of step t.
template <typename T>
DF_INLINE void gru_backward_finish(
    DF_DEVICE const T* dhs, DF_DEVICE const T* gates, DF_DEVICE const T* hs, DF_DEVICE const T* h0,
    DF_DEVICE T* dgx, DF_DEVICE T* dgh, DF_DEVICE T* dh_direct, int T_len, int H, int b, int t,
    int j, bool last_step, T wh_sum) {
  long row = (long)b * T_len + t;
  T carry = last_step ? T(0) : dh_direct[(long)b * H + j] + wh_sum;
  T dh = dhs[row * H + j] + carry;
  DF_DEVICE const T* s = gates + row * 4 * H;
  T h_prev = t > 0 ? hs[(row - 1) * H + j] : h0[(long)b * H + j];
  GruCellGrad<T> g = gru_cell_backward(dh, s[j], s[H + j], s[2 * H + j], s[3 * H + j], h_prev);
  DF_DEVICE T* ox = dgx + row * 3 * H;
  DF_DEVICE T* oh = dgh + row * 3 * H;
  ox[j] = g.da_r;
  ox[H + j] = g.da_z;
  ox[2 * H + j] = g.da_n;
  oh[j] = g.da_r;
  oh[H + j] = g.da_z;
  oh[2 * H + j] = g.dhn;
  dh_direct[(long)b * H + j] = g.dh_direct;
}

// dL/dh0[b, j] = dh_direct of step 0 + dgh_0[b] . Wh[:, j].
template <typename T>
DF_INLINE void gru_backward_dh0_finish(
    DF_DEVICE const T* dh_direct, DF_DEVICE T* dh0, int H, int b, int j, T wh_sum) {
  dh0[(long)b * H + j] = dh_direct[(long)b * H + j] + wh_sum;
}

}  // namespace dfk
