// Selective scan forward body (selective_scan_common.h has the equations): one (batch, channel)
// runs the recurrence chunk by chunk, writing out, the last state and the checkpoints.
#pragma once

#include "kernels/selective_scan_common.h"

namespace dfk {

// Forward step, state n: h = exp(dt A) h + dt u B_t; ch = its term of y = sum_n C_t h.
template <typename T>
struct ScanFwdState {
  DF_THREAD T* h;
  DF_THREAD T* ch;
  DF_THREAD const T* a;  // A's row
  T dt, dtu;
  const DF_DEVICE Scalar<T>* Bt;
  const DF_DEVICE Scalar<T>* Ct;
  DF_INLINE void operator()(int n) const {
    h[n] = fastmath::exp(dt * a[n]) * h[n] + dtu * Bt[n];
    ch[n] = Ct[n] * h[n];
  }
};

// ---- forward --------------------------------------------------------------------------------------
// One (b, d) (d: the thread's first channel): runs the recurrence over all time steps, a chunk of
// kScanChunk steps at a time. Each chunk first gathers its per-step values (dt, u, gate) in a loop
// over time, so the state loop only does the exp/fma work. NFIX > 0 means state == NFIX is known at
// compile time; otherwise the runtime state count (<= MAXN) is used. Optional pointers may be
// null/dummy when their flag is off. Outputs: out[b,t,d], last[b,d,:], ckpt[b,c,:,d] = state
// entering chunk c (channels innermost: contiguous for the CPU's vectors and for neighbouring GPU
// threads).
// The forward's per-(b, d) state between chunks (with A's row, loaded once), so a caller may
// interleave channels chunk by chunk; scan_forward_channel runs one channel's chunks in order.
template <typename T, int MAXN>
struct ScanFwdCarry {
  T h[MAXN], a[MAXN];
};

template <typename T, int MAXN, int NFIX>
DF_INLINE void scan_forward_init(ScanParams p, int b, int d, const DF_DEVICE Scalar<T>* DF_RESTRICT A,
                                 const DF_DEVICE Scalar<T>* DF_RESTRICT h0,
                                 DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  scan_load_row<T, NFIX>(p, d, A, cy.a);
  if (p.flags & kScanHasH0) {
    scan_load_row<T, NFIX>(p, (long)b * p.channels + d, h0, cy.h);
  } else {
    for (int n = 0; n < (NFIX > 0 ? NFIX : p.state); ++n) cy.h[n] = T{};
  }
}

// Chunk c of one (b, d).
template <typename T, int MAXN, int NFIX>
DF_INLINE void scan_forward_chunk(
    ScanParams p, int b, int d, int c,
    const DF_DEVICE Scalar<T>* DF_RESTRICT u, const DF_DEVICE Scalar<T>* DF_RESTRICT delta,
    const DF_DEVICE Scalar<T>* DF_RESTRICT B, const DF_DEVICE Scalar<T>* DF_RESTRICT C,
    const DF_DEVICE Scalar<T>* DF_RESTRICT D, const DF_DEVICE Scalar<T>* DF_RESTRICT z,
    const DF_DEVICE Scalar<T>* DF_RESTRICT bias, DF_DEVICE Scalar<T>* DF_RESTRICT out,
    DF_DEVICE Scalar<T>* DF_RESTRICT ckpt, DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  typedef Vec<T> VT;
  typedef Scalar<T> S;
  const int N = NFIX > 0 ? NFIX : p.state;
  const int L = p.length, DC = p.channels;
  const bool has_z = (p.flags & kScanHasZ) != 0, softplus = (p.flags & kScanSoftplus) != 0;
  T h[MAXN], ch[MAXN];
  for (int n = 0; n < MAXN; ++n) ch[n] = T{};
  for (int n = 0; n < N; ++n) h[n] = cy.h[n];
  const T dd = (p.flags & kScanHasD) ? VT::load(D + d) : T{};
  const T bb = (p.flags & kScanHasBias) ? VT::load(bias + d) : T{};
  const long row = (long)b * L * DC + d;  // element (b, 0, d)
  T k_dt[kScanChunk], k_u[kScanChunk], k_y[kScanChunk], k_z[kScanChunk];
  for (int k = 0; k < kScanChunk; ++k) k_y[k] = T{};  // the tail chunk leaves some unset

  {
    const int t0 = c * kScanChunk;
    const int len = L - t0 < kScanChunk ? L - t0 : kScanChunk;
    DF_DEVICE S* cp = ckpt + ((long)b * p.n_chunks + c) * N * DC + d;
    for (int n = 0; n < N; ++n) VT::store(cp + (long)n * DC, h[n]);

    // Per-step values over the whole chunk width (the tail chunk repeats its last step), so these
    // loops have a fixed trip count (for scalar T they vectorise over time).
    for (int k = 0; k < kScanChunk; ++k) {
      const long i = row + (long)(t0 + k < L ? t0 + k : L - 1) * DC;
      k_dt[k] = VT::load(delta + i) + bb;
      k_u[k] = VT::load(u + i);
    }
    if (softplus) {
      for (int k = 0; k < kScanChunk; ++k) k_dt[k] = fastmath::softplus(k_dt[k]);
    }
    for (int k = 0; k < len; ++k) {
      const T dt = k_dt[k], dtu = dt * k_u[k];
      const DF_DEVICE S* Bt = B + ((long)b * L + t0 + k) * N;
      const DF_DEVICE S* Ct = C + ((long)b * L + t0 + k) * N;
      const ScanFwdState<T> step = {h, ch, cy.a, dt, dtu, Bt, Ct};
      ScanStates<T>::each(N, step);
      k_y[k] = hsum<T, MAXN>(ch);
    }
    for (int k = 0; k < kScanChunk; ++k) k_y[k] += dd * k_u[k];
    if (has_z) {
      for (int k = 0; k < kScanChunk; ++k) k_z[k] = VT::load(z + row + (long)(t0 + k < L ? t0 + k : L - 1) * DC);
      for (int k = 0; k < kScanChunk; ++k) k_y[k] *= k_z[k] * fastmath::sigmoid(k_z[k]);
    }
    for (int k = 0; k < len; ++k) VT::store(out + row + (long)(t0 + k) * DC, k_y[k]);
  }
  for (int n = 0; n < N; ++n) cy.h[n] = h[n];
}

template <typename T, int MAXN, int NFIX>
DF_INLINE void scan_forward_finish(ScanParams p, int b, int d, DF_DEVICE Scalar<T>* DF_RESTRICT last,
                                   DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  const long bd = (long)b * p.channels + d;
  for (int n = 0; n < N; ++n) Vec<T>::store_strided(last + bd * N + n, N, cy.h[n]);
}

template <typename T, int MAXN, int NFIX>
DF_INLINE void scan_forward_channel(
    ScanParams p, int b, int d,
    const DF_DEVICE Scalar<T>* DF_RESTRICT u, const DF_DEVICE Scalar<T>* DF_RESTRICT delta,
    const DF_DEVICE Scalar<T>* DF_RESTRICT A, const DF_DEVICE Scalar<T>* DF_RESTRICT B,
    const DF_DEVICE Scalar<T>* DF_RESTRICT C, const DF_DEVICE Scalar<T>* DF_RESTRICT D,
    const DF_DEVICE Scalar<T>* DF_RESTRICT z, const DF_DEVICE Scalar<T>* DF_RESTRICT bias,
    const DF_DEVICE Scalar<T>* DF_RESTRICT h0, DF_DEVICE Scalar<T>* DF_RESTRICT out,
    DF_DEVICE Scalar<T>* DF_RESTRICT last, DF_DEVICE Scalar<T>* DF_RESTRICT ckpt) {
  ScanFwdCarry<T, MAXN> cy;
  scan_forward_init<T, MAXN, NFIX>(p, b, d, A, h0, cy);
  for (int c = 0; c < p.n_chunks; ++c) {
    scan_forward_chunk<T, MAXN, NFIX>(p, b, d, c, u, delta, B, C, D, z, bias, out, ckpt, cy);
  }
  scan_forward_finish<T, MAXN, NFIX>(p, b, d, last, cy);
}

}  // namespace dfk
