// CPU GRU recurrence (forward and reverse), blocked and multi-threaded. Layouts as in kernels/gru.h.
#pragma once

namespace dfnet4 {

struct GruDims {
  int B, T, H;
};

// hs (B,T,H), gates (B,T,4H) from gx (B,T,3H), Wh (3H,H), bhn (H), h0 (B,H).
template <typename T>
void gru_forward_cpu(const GruDims& d, const T* gx, const T* Wh, const T* bhn, const T* h0, T* hs,
                     T* gates);

// dgx, dgh (B,T,3H) and dh0 (B,H) from dhs (B,T,H) and the forward's hs, gates, h0, Wh.
template <typename T>
void gru_backward_cpu(const GruDims& d, const T* dhs, const T* gates, const T* hs, const T* h0,
                      const T* Wh, T* dgx, T* dgh, T* dh0);

}  // namespace dfnet4
