// GRU recurrence kernel bodies, backward, shared by the CPU primitive and the Metal wrappers
// (metal/gru.metal; launch plan: csrc/gru_launch.h). The equations and the saved gates: gru_fwd.h.
#pragma once

#include "kernels/defines.h"
#include "kernels/gru_params.h"

namespace dfk {

// Gradients of one hidden unit of one step, given dh = dL/dh_t (output cotangent + carry).
// da_* are gradients of the gate pre-activations: dgx = (da_r, da_z, da_n) and the gradient of
// gh = Wh h (+ bhn on the n part) is (da_r, da_z, dhn). dh_direct is the part of dL/dh_{t-1} that
// does not pass through Wh.
template <typename T>
struct GruCellGrad {
  T da_r, da_z, da_n, dhn, dh_direct;
};

template <typename T>
DF_INLINE GruCellGrad<T> gru_cell_backward(T dh, T r, T z, T n, T hn, T h_prev) {
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

// ---- Step bodies of the Metal kernels ----
// Layouts (all row-major, contiguous): gates (B, T, 4H), hs, dhs (B, T, H), Wh (3H, H), h0 (B, H),
// dgx/dgh (B, T, 3H), dh_direct (B, H) scratch.

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
