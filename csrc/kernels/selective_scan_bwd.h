// Selective scan backward body (selective_scan_common.h has the equations): one (batch, channel)
// recomputes each chunk's states from its checkpoint and runs the adjoint recurrence backwards over
// them; sums over channels go through a Lane policy (CPU: per-block partials, GPU: SIMD-group sums).
#pragma once

#include "kernels/selective_scan_common.h"

namespace dfk {

// How one logical thread sends its per-channel terms into sums over its block's channels.
// CPU: one OS thread walks the block's channels (one at a time, or 16 per vector) and adds into the
// partial (zeroed beforehand). Scratch for the recompute is a private, contiguous array.
template <int MAXN>
struct ScanCpuLane {
  DF_INLINE bool active() const { return true; }
  DF_INLINE long slot(int k, int n) const { return (long)k * MAXN + n; }
  // dst[n] += v[n] for n < N.
  template <typename T>
  DF_INLINE void reduce_row(DF_DEVICE T* dst, DF_THREAD const T* v, int N) const {
    for (int n = 0; n < N; ++n) dst[n] += v[n];
  }
#if DFK_VECTOR_LANES > 1
  // dst[n] += (sum over the 16 channels of v[n]) for n < N; v has MAXN (a multiple of 16) entries.
  DF_INLINE void reduce_row(float* dst, const f32x16* v, int N) const {
    typedef Vec<f32x16> VT;
    for (int n0 = 0; n0 < N; n0 += 16) {
      const f32x16 s = lane_sums16(v + n0);
      if (N - n0 >= 16) {
        VT::store(dst + n0, VT::load(dst + n0) + s);
      } else {
        for (int j = 0; j < N - n0; ++j) dst[n0 + j] += s[j];
      }
    }
  }
#endif
};

#if defined(__METAL_VERSION__)
// GPU: the 32 lanes of a SIMD-group are 32 consecutive channels of one batch row; every lane takes
// part in every simd_sum (lanes past `channels` contribute 0), lane 0 stores. Scratch is one
// device buffer interleaved by thread so that neighbouring lanes touch neighbouring addresses.
template <int MAXN>
struct ScanGpuLane {
  bool on;          // this lane's channel exists
  uint simd_lane;   // thread_index_in_simdgroup
  long thread_id;   // linear id over the whole grid
  long n_threads;   // threads in the grid
  DF_INLINE bool active() const { return on; }
  DF_INLINE long slot(int k, int n) const { return ((long)k * MAXN + n) * n_threads + thread_id; }
  // dst[n] = sum over the SIMD-group's lanes of v[n], n < N.
  template <typename T>
  DF_INLINE void reduce_row(DF_DEVICE T* dst, DF_THREAD const T* v, int N) const {
    for (int n = 0; n < N; ++n) {
      const T s = simd_sum(on ? v[n] : T(0));
      if (simd_lane == 0) dst[n] = s;
    }
  }
};
#endif

// Backward recompute of step k (the forward step again, from the decay sa already computed),
// saving exp(dt A) h_{t-1} for the adjoint; yc: terms of y (for dz), w: terms of dC_t.
template <typename T, typename Lane>
struct ScanBwdRecompute {
  Lane lane;
  int k;
  DF_DEVICE T* sah;
  const DF_DEVICE T* sa;
  DF_THREAD T* h;
  DF_THREAD T* yc;
  DF_THREAD T* w;
  T dtu, gy;
  const DF_DEVICE Scalar<T>* Bt;
  const DF_DEVICE Scalar<T>* Ct;
  DF_INLINE void operator()(int n) const {
    const T ah = sa[lane.slot(k, n)] * h[n];
    sah[lane.slot(k, n)] = ah;
    h[n] = ah + dtu * Bt[n];
    yc[n] = Ct[n] * h[n];
    w[n] = gy * h[n];
  }
};

// Adjoint step k, state n: lam = dL/dh through the output and the next step; la, lb: terms of
// dL/d dt (through exp(dt A)) and of dL/d(dt u) (through the drive); w: terms of dB_t.
template <typename T, typename Lane>
struct ScanBwdAdjoint {
  Lane lane;
  int k;
  const DF_DEVICE T* sah;
  const DF_DEVICE T* sa;
  DF_THREAD const T* a;  // A's row
  DF_THREAD T* lam;
  DF_THREAD T* dA_acc;
  DF_THREAD T* la;
  DF_THREAD T* lb;
  DF_THREAD T* w;
  T dt, dtu, gy;
  const DF_DEVICE Scalar<T>* Bt;
  const DF_DEVICE Scalar<T>* Ct;
  DF_INLINE void operator()(int n) const {
    lam[n] += gy * Ct[n];  // now dL/dh_t
    const T lah = lam[n] * sah[lane.slot(k, n)];
    la[n] = lah * a[n];
    dA_acc[n] += lah * dt;
    lb[n] = lam[n] * Bt[n];
    w[n] = lam[n] * dtu;
    lam[n] *= sa[lane.slot(k, n)];  // now dL/dh_{t-1} (minus the C term)
  }
};

// ---- backward -------------------------------------------------------------------------------------
// Gradient buffers written by one (b, d):
//   du, ddelta, dz, out (kScanBwdOut): [b,t,d];  dA_part, dh0: [b,d,:];  dD_part, dbias_part: [b,d]
//   dB_part, dC_part: [b, d / kScanBlock, t, :], through lane.reduce_row (sums over the block).
// sah/sa: recompute scratch for one chunk, addressed by lane.slot(k, n): exp(dt A) h_{t-1} and exp(dt A).
// Chunks run last to first: recompute the chunk's states from its checkpoint (forwards), then the
// adjoint lam = dL/dh_t backwards over it, carried into the previous chunk.
// The backward's per-(b, d) state between chunks (see ScanFwdCarry).
template <typename T, int MAXN>
struct ScanBwdCarry {
  T lam[MAXN], dA_acc[MAXN], a[MAXN];
  T dD_acc, dbias_acc;
};

template <typename T, int MAXN, int NFIX>
DF_INLINE void scan_backward_init(ScanParams p, int b, int d, const DF_DEVICE Scalar<T>* DF_RESTRICT A,
                                  const DF_DEVICE Scalar<T>* DF_RESTRICT dlast,
                                  DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  scan_load_row<T, NFIX>(p, d, A, cy.a);
  scan_load_row<T, NFIX>(p, (long)b * p.channels + d, dlast, cy.lam);  // dL/dh_{L-1}: last_state's cotangent
  for (int n = 0; n < (NFIX > 0 ? NFIX : p.state); ++n) cy.dA_acc[n] = T{};
  cy.dD_acc = T{};
  cy.dbias_acc = T{};
}

// Chunk c of one (b, d); chunks must come last to first.
template <typename T, int MAXN, int NFIX, typename Lane>
DF_INLINE void scan_backward_chunk(
    ScanParams p, int b, int d, int c, Lane lane,
    const DF_DEVICE Scalar<T>* DF_RESTRICT u, const DF_DEVICE Scalar<T>* DF_RESTRICT delta,
    const DF_DEVICE Scalar<T>* DF_RESTRICT B, const DF_DEVICE Scalar<T>* DF_RESTRICT C,
    const DF_DEVICE Scalar<T>* DF_RESTRICT D, const DF_DEVICE Scalar<T>* DF_RESTRICT z,
    const DF_DEVICE Scalar<T>* DF_RESTRICT bias, const DF_DEVICE Scalar<T>* DF_RESTRICT ckpt,
    const DF_DEVICE Scalar<T>* DF_RESTRICT dout, DF_DEVICE Scalar<T>* DF_RESTRICT du,
    DF_DEVICE Scalar<T>* DF_RESTRICT ddelta, DF_DEVICE Scalar<T>* DF_RESTRICT dz,
    DF_DEVICE Scalar<T>* DF_RESTRICT out, DF_DEVICE Scalar<T>* DF_RESTRICT dB_part,
    DF_DEVICE Scalar<T>* DF_RESTRICT dC_part, DF_DEVICE T* DF_RESTRICT sah, DF_DEVICE T* DF_RESTRICT sa,
    DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  typedef Vec<T> VT;
  typedef Scalar<T> S;
  const int N = NFIX > 0 ? NFIX : p.state;
  const int L = p.length, DC = p.channels;
  const bool has_z = (p.flags & kScanHasZ) != 0, softplus = (p.flags & kScanSoftplus) != 0;
  const bool emit_out = (p.flags & kScanBwdOut) != 0;
  const bool on = lane.active();
  // w: this step's terms of the dB or dC sum over channels.
  T h[MAXN], lam[MAXN], dA_acc[MAXN], v1[MAXN], v2[MAXN], w[MAXN];
  for (int n = 0; n < MAXN; ++n) v1[n] = v2[n] = w[n] = T{};
  for (int n = 0; n < N; ++n) {
    lam[n] = cy.lam[n];
    dA_acc[n] = cy.dA_acc[n];
  }
  const T dd = (p.flags & kScanHasD) ? VT::load(D + d) : T{};
  const T bb = (p.flags & kScanHasBias) ? VT::load(bias + d) : T{};
  const long row = (long)b * L * DC + d;
  const long part_row = ((long)b * p.n_blocks + d / kScanBlock) * L;  // partial row (b, block, 0)
  T dD_acc = cy.dD_acc, dbias_acc = cy.dbias_acc;
  // Per-step values of the current chunk: dt, softplus', u, dL/dy, dz/dy... and results.
  T k_dt[kScanChunk], k_dsp[kScanChunk], k_u[kScanChunk], k_gy[kScanChunk], k_zf[kScanChunk];
  T k_y[kScanChunk], k_la[kScanChunk], k_lb[kScanChunk], k_gate[kScanChunk];

  {
    const int t0 = c * kScanChunk;
    const int len = L - t0 < kScanChunk ? L - t0 : kScanChunk;

    // Per-step values over the whole chunk width (the tail chunk repeats its last step), in
    // branch-free loops of fixed trip count (for scalar T they vectorise over time).
    for (int k = 0; k < kScanChunk; ++k) {
      const long i = row + (long)(t0 + k < L ? t0 + k : L - 1) * DC;
      k_u[k] = VT::load(u + i);
      k_gy[k] = VT::load(dout + i);
      k_dt[k] = VT::load(delta + i) + bb;
    }
    if (softplus) {
      for (int k = 0; k < kScanChunk; ++k) {
        const T x = k_dt[k];
        k_dt[k] = fastmath::softplus(x);
        k_dsp[k] = fastmath::sigmoid(x);
      }
    } else {
      for (int k = 0; k < kScanChunk; ++k) k_dsp[k] = VT::splat(S(1));
    }
    if (has_z) {
      for (int k = 0; k < kScanChunk; ++k) k_zf[k] = VT::load(z + row + (long)(t0 + k < L ? t0 + k : L - 1) * DC);
      for (int k = 0; k < kScanChunk; ++k) {
        const T g = k_gy[k], zt = k_zf[k], sz = fastmath::sigmoid(zt);
        k_gate[k] = zt * sz;                             // silu(z), as the forward forms it
        k_gy[k] = g * zt * sz;                           // dL/dy = dL/dout * silu(z)
        k_zf[k] = g * sz * (S(1) + zt * (S(1) - sz));  // dL/dz = y * this
      }
    } else {
      for (int k = 0; k < kScanChunk; ++k) k_gate[k] = VT::splat(S(1));
    }

    // Recompute the chunk's states forwards; dC and y (for dz) need only forward quantities.
    const DF_DEVICE S* cp = ckpt + ((long)b * p.n_chunks + c) * N * DC + d;
    for (int n = 0; n < N; ++n) h[n] = VT::load(cp + (long)n * DC);
    // The decays first, for the whole chunk: independent of the state, so these exps pipeline
    // instead of sitting in the recurrence's dependency chain.
    for (int k = 0; k < len; ++k) {
      for (int n = 0; n < N; ++n) sa[lane.slot(k, n)] = fastmath::exp(k_dt[k] * cy.a[n]);
    }
    for (int k = 0; k < len; ++k) {
      const int t = t0 + k;
      const T dtu = k_dt[k] * k_u[k], gy = k_gy[k];
      const DF_DEVICE S* Bt = B + ((long)b * L + t) * N;
      const DF_DEVICE S* Ct = C + ((long)b * L + t) * N;
      const ScanBwdRecompute<T, Lane> step = {lane, k, sah, sa, h, v1, w, dtu, gy, Bt, Ct};
      ScanStates<T>::each(N, step);
      lane.reduce_row(dC_part + (part_row + t) * N, w, N);
      if (has_z || emit_out) k_y[k] = hsum<T, MAXN>(v1);
    }

    // Adjoint backwards over the chunk.
    for (int k = len - 1; k >= 0; --k) {
      const int t = t0 + k;
      const T dt = k_dt[k], gy = k_gy[k], dtu = dt * k_u[k];
      const DF_DEVICE S* Bt = B + ((long)b * L + t) * N;
      const DF_DEVICE S* Ct = C + ((long)b * L + t) * N;
      const ScanBwdAdjoint<T, Lane> step = {lane, k, sah, sa, cy.a, lam, dA_acc, v1, v2, w, dt, dtu, gy, Bt, Ct};
      ScanStates<T>::each(N, step);
      lane.reduce_row(dB_part + (part_row + t) * N, w, N);
      k_la[k] = hsum<T, MAXN>(v1);
      k_lb[k] = hsum<T, MAXN>(v2);
    }

    for (int k = 0; k < len; ++k) {
      const long i = row + (long)(t0 + k) * DC;
      const T dx = (k_la[k] + k_u[k] * k_lb[k]) * k_dsp[k];
      dbias_acc += dx;
      dD_acc += k_gy[k] * k_u[k];
      if (on) {
        VT::store(du + i, k_gy[k] * dd + k_dt[k] * k_lb[k]);
        VT::store(ddelta + i, dx);
        if (has_z) VT::store(dz + i, (k_y[k] + dd * k_u[k]) * k_zf[k]);
        if (emit_out) VT::store(out + i, (k_y[k] + dd * k_u[k]) * k_gate[k]);
      }
    }
  }

  for (int n = 0; n < N; ++n) {
    cy.lam[n] = lam[n];
    cy.dA_acc[n] = dA_acc[n];
  }
  cy.dD_acc = dD_acc;
  cy.dbias_acc = dbias_acc;
}

template <typename T, int MAXN, int NFIX, typename Lane>
DF_INLINE void scan_backward_finish(ScanParams p, int b, int d, Lane lane,
                                    DF_DEVICE Scalar<T>* DF_RESTRICT dA_part,
                                    DF_DEVICE Scalar<T>* DF_RESTRICT dD_part,
                                    DF_DEVICE Scalar<T>* DF_RESTRICT dbias_part,
                                    DF_DEVICE Scalar<T>* DF_RESTRICT dh0,
                                    DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  typedef Vec<T> VT;
  const int N = NFIX > 0 ? NFIX : p.state;
  if (lane.active()) {
    const long bd = (long)b * p.channels + d;
    for (int n = 0; n < N; ++n) {
      VT::store_strided(dh0 + bd * N + n, N, cy.lam[n]);
      VT::store_strided(dA_part + bd * N + n, N, cy.dA_acc[n]);
    }
    if (p.flags & kScanHasD) VT::store(dD_part + bd, cy.dD_acc);
    if (p.flags & kScanHasBias) VT::store(dbias_part + bd, cy.dbias_acc);
  }
}

template <typename T, int MAXN, int NFIX, typename Lane>
DF_INLINE void scan_backward_channel(
    ScanParams p, int b, int d, Lane lane,
    const DF_DEVICE Scalar<T>* DF_RESTRICT u, const DF_DEVICE Scalar<T>* DF_RESTRICT delta,
    const DF_DEVICE Scalar<T>* DF_RESTRICT A, const DF_DEVICE Scalar<T>* DF_RESTRICT B,
    const DF_DEVICE Scalar<T>* DF_RESTRICT C, const DF_DEVICE Scalar<T>* DF_RESTRICT D,
    const DF_DEVICE Scalar<T>* DF_RESTRICT z, const DF_DEVICE Scalar<T>* DF_RESTRICT bias,
    const DF_DEVICE Scalar<T>* DF_RESTRICT ckpt, const DF_DEVICE Scalar<T>* DF_RESTRICT dout,
    const DF_DEVICE Scalar<T>* DF_RESTRICT dlast,
    DF_DEVICE Scalar<T>* DF_RESTRICT du, DF_DEVICE Scalar<T>* DF_RESTRICT ddelta,
    DF_DEVICE Scalar<T>* DF_RESTRICT dz, DF_DEVICE Scalar<T>* DF_RESTRICT out,
    DF_DEVICE Scalar<T>* DF_RESTRICT dA_part, DF_DEVICE Scalar<T>* DF_RESTRICT dB_part,
    DF_DEVICE Scalar<T>* DF_RESTRICT dC_part, DF_DEVICE Scalar<T>* DF_RESTRICT dD_part,
    DF_DEVICE Scalar<T>* DF_RESTRICT dbias_part, DF_DEVICE Scalar<T>* DF_RESTRICT dh0,
    DF_DEVICE T* DF_RESTRICT sah, DF_DEVICE T* DF_RESTRICT sa) {
  ScanBwdCarry<T, MAXN> cy;
  scan_backward_init<T, MAXN, NFIX>(p, b, d, A, dlast, cy);
  for (int c = p.n_chunks - 1; c >= 0; --c) {
    scan_backward_chunk<T, MAXN, NFIX, Lane>(p, b, d, c, lane, u, delta, B, C, D, z, bias, ckpt, dout, du,
                                             ddelta, dz, out, dB_part, dC_part, sah, sa, cy);
  }
  scan_backward_finish<T, MAXN, NFIX, Lane>(p, b, d, lane, dA_part, dD_part, dbias_part, dh0, cy);
}

// dst[o, j] = sum over k < count of src[o, k, j], k in order: folds the backward's partials
// (dB, dC over channel blocks; dA, dD, dbias over batch) into the gradients. One thread per (j, o).
template <typename T>
DF_INLINE void scan_sum_partials(const DF_DEVICE T* DF_RESTRICT src, DF_DEVICE T* DF_RESTRICT dst,
                                 int count, long inner, long o, long j) {
  T s = T(0);
  for (int k = 0; k < count; ++k) s += src[(o * count + k) * inner + j];
  dst[o * inner + j] = s;
}

}  // namespace dfk
