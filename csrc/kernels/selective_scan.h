// Selective scan kernel bodies (mamba-ssm's selective_scan_fn, real A, channels-last), written once
// for the CPU primitive and the Metal kernels (DESIGN.md decision 1). One logical thread owns one
// (batch, channel) pair and keeps its `state` values in a local array, so on the CPU the inner loops
// over state vectorise and on the GPU they stay in registers.
//
//   dt = delta (+ bias[d]), softplus'd if asked;  h_t = exp(dt A) h_{t-1} + dt u B_t
//   y  = sum_n C_t h_t + D u;                     out = y * silu(z)
//
// The forward saves the state entering every chunk of kScanChunk steps (the checkpoints); the
// backward recomputes one chunk's states from its checkpoint into a small scratch and runs the
// adjoint recurrence backwards over it. Nothing of size batch*time*channels*state exists anywhere.
// Sums over channels (dB, dC) go through a Lane policy: the CPU adds into a per-block partial, the
// GPU reduces over the 32 channels of a SIMD-group and lane 0 stores.
#pragma once

#include "kernels/defines.h"

#if defined(__METAL_VERSION__)
#define DFK_SCAN_INLINE inline
#define DFK_RESTRICT
#else
#define DFK_SCAN_INLINE inline __attribute__((always_inline))
#define DFK_RESTRICT __restrict__
#endif

namespace dfk {

enum ScanConstants {
  kScanChunk = 16,  // checkpoint interval (time steps); also the recompute scratch depth
  kScanBlock = 32,  // channels per reduction block (one SIMD-group on Apple GPUs)
  kScanMaxState = 64,
};

enum ScanFlags {
  kScanHasD = 1,
  kScanHasZ = 2,
  kScanHasBias = 4,
  kScanSoftplus = 8,
  kScanHasH0 = 16,
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only, so the
// layout is the same on both sides).
struct ScanParams {
  int batch;
  int length;
  int channels;
  int state;
  int n_chunks;  // ceil(length / kScanChunk)
  int n_blocks;  // ceil(channels / kScanBlock)
  int flags;
};

// ---- exp: vectorisable, same code on CPU and GPU --------------------------------------------------
// float: Cephes-style range reduction x = k ln2 + r, |r| <= ln2/2, degree-6 polynomial (about 1 ulp),
// scaled by 2^k built from exponent bits. Branch-free (selects only) so loops over it vectorise.
// x < -86.5 returns 0 (true value < 3e-38, i.e. flushed denormals); x > ln(FLT_MAX) returns inf;
// NaN propagates through the polynomial. Other types (double, CPU only) use the library exp.

#if defined(__METAL_VERSION__)
DFK_SCAN_INLINE int scan_float_bits(float x) { return as_type<int>(x); }
DFK_SCAN_INLINE float scan_bits_float(uint x) { return as_type<float>(x); }
#else
DFK_SCAN_INLINE int scan_float_bits(float x) { return __builtin_bit_cast(int, x); }
DFK_SCAN_INLINE float scan_bits_float(unsigned x) { return __builtin_bit_cast(float, x); }
#endif

template <typename T>
struct ScanExp {
  static DFK_SCAN_INLINE T eval(T x) { return DF_MATH::exp(x); }
};

template <>
struct ScanExp<float> {
  // Range limits as functions: MSL allows static data members only in the constant address space.
  static DFK_SCAN_INLINE float lo() { return -86.5f; }
  static DFK_SCAN_INLINE float hi() { return 88.72283935546875f; }
  // exp(x) for x in [lo, hi] (NaN in, NaN out).
  static DFK_SCAN_INLINE float core(float x) {
    // Round x*log2(e) to an integer with the 1.5*2^23 trick: the sum's low mantissa bits hold it.
    const float shifted = x * 1.44269504088896341f + 12582912.0f;
    const int k = scan_float_bits(shifted) - 0x4B400000;
    const float kf = shifted - 12582912.0f;
    float r = x - kf * 0.693359375f;  // ln2 split in two: the first product is exact
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    // 2^k = 2^(k-1) * 2 keeps k = 128 (x near ln FLT_MAX) representable; k >= -125 for x >= lo.
    const unsigned bits = (unsigned)(k + 126) << 23;
    return p * scan_bits_float(bits) * 2.0f;
  }
  static DFK_SCAN_INLINE float eval(float x) {
    const float lo_ = lo(), hi_ = hi();
    float xc = x < lo_ ? lo_ : x;  // comparisons are false for NaN: NaN flows on
    xc = xc > hi_ ? hi_ : xc;
    const float res = x < lo_ ? 0.0f : core(xc);
    return x > hi_ ? scan_bits_float(0x7f800000u) : res;  // +inf
  }
};

template <typename T>
DFK_SCAN_INLINE T scan_exp(T x) { return ScanExp<T>::eval(x); }

template <typename T>
DFK_SCAN_INLINE T scan_sigmoid(T x) { return T(1) / (T(1) + scan_exp(-x)); }

// log(y) for y in [1, 2] (all softplus needs): Cephes' logf, y = m 2^e with m in [sqrt(1/2), sqrt(2)),
// a degree-9 polynomial in m - 1 (about 1 ulp). Branch-free so it vectorises. double: library log.
template <typename T>
struct ScanLog12 {
  static DFK_SCAN_INLINE T eval(T y) { return DF_MATH::log(y); }
};

template <>
struct ScanLog12<float> {
  static DFK_SCAN_INLINE float eval(float y) {
    // Shift the bits so the mantissa lands in [sqrt(1/2), sqrt(2)) without selects.
    const int ix = scan_float_bits(y) - 0x3f3504f3;
    const float e = (float)(ix >> 23);
    const float m = scan_bits_float((unsigned)((ix & 0x007fffff) + 0x3f3504f3)) - 1.0f;
    const float z = m * m;
    float p = 7.0376836292e-2f;
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    float r = m * z * p;
    r = r + e * -2.12194440e-4f;
    r = r - 0.5f * z;
    return m + r + e * 0.693359375f;
  }
};

// softplus(x) = log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): no overflow. A NaN x stays NaN
// through the first term (the selects pass it on), whatever the second computes from it.
template <typename T>
struct ScanSoftplus {
  static DFK_SCAN_INLINE T eval(T x) {
    const T ax = x < T(0) ? -x : x;
    return (x < T(0) ? T(0) : x) + ScanLog12<T>::eval(T(1) + DF_MATH::exp(-ax));
  }
};

template <>
struct ScanSoftplus<float> {
  static DFK_SCAN_INLINE float eval(float x) {
    // Shaped so GCC vectorises loops over it (a float select here defeats its if-conversion):
    // max(x, 0) as (x + |x|) / 2, which also carries a NaN through; exp(-|x|) needs only |x|
    // clamped to -lo (beyond, 1 + exp rounds to 1), done as an integer min on the bit pattern
    // (ordered like the values for non-negative floats).
    const float ax = DF_MATH::abs(x);
    const int lim = 0x42ad0000;  // bits of 86.5f = -ScanExp<float>::lo()
    int ab = scan_float_bits(ax);
    ab = ab < lim ? ab : lim;
    const float e = -scan_bits_float((unsigned)ab);
    return 0.5f * (x + ax) + ScanLog12<float>::eval(1.0f + ScanExp<float>::core(e));
  }
};

template <typename T>
DFK_SCAN_INLINE T scan_softplus(T x) { return ScanSoftplus<T>::eval(x); }

// Sum of v[0..MAXN) (entries at or past the runtime state count must be 0). The state loops store
// their per-state terms into such an array and sum it here, so the loops themselves stay purely
// elementwise (vectorisable without reassociation flags). On the CPU the common float x 16 case is a
// shuffle tree on one vector register; otherwise pairwise halving.
// (__builtin_shufflevector: clang, GCC >= 12.)
#if !defined(__METAL_VERSION__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define DFK_SCAN_VECTOR_HSUM 1
typedef float ScanF16 __attribute__((vector_size(64)));
typedef float ScanF8 __attribute__((vector_size(32)));
typedef float ScanF4 __attribute__((vector_size(16)));
#endif

template <typename T, int MAXN>
DFK_SCAN_INLINE T scan_hsum(DF_THREAD T* v) {
#if defined(DFK_SCAN_VECTOR_HSUM)
  if constexpr (sizeof(T) == 4 && MAXN == 16) {
    ScanF16 x;
    __builtin_memcpy(&x, v, sizeof(x));
    const ScanF8 a = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) +
                     __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    const ScanF4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
  }
#endif
  T w[MAXN];
  for (int n = 0; n < MAXN; ++n) w[n] = v[n];
  for (int h = MAXN / 2; h >= 1; h /= 2) {
    for (int n = 0; n < h; ++n) w[n] += w[n + h];
  }
  return w[0];
}

// How one logical thread sends a per-channel contribution into a sum over its block's channels.
// CPU: one OS thread walks the block's channels one after another and adds into the partial
// (zeroed beforehand). Scratch for the recompute is a private, contiguous array.
template <int MAXN>
struct ScanCpuLane {
  DFK_SCAN_INLINE bool active() const { return true; }
  DFK_SCAN_INLINE long slot(int k, int n) const { return (long)k * MAXN + n; }
  template <typename T>
  DFK_SCAN_INLINE void reduce_to(DF_DEVICE T* dst, T v) const { *dst += v; }
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
  DFK_SCAN_INLINE bool active() const { return on; }
  DFK_SCAN_INLINE long slot(int k, int n) const { return ((long)k * MAXN + n) * n_threads + thread_id; }
  template <typename T>
  DFK_SCAN_INLINE void reduce_to(DF_DEVICE T* dst, T v) const {
    T s = simd_sum(on ? v : T(0));
    if (simd_lane == 0) *dst = s;
  }
};
#endif

// ---- forward --------------------------------------------------------------------------------------
// One (b, d): runs the recurrence over all time steps, a chunk of kScanChunk steps at a time. Each
// chunk first gathers its per-step scalars (dt, u, gate) in a loop that vectorises over time, so the
// state loop only does the exp/fma work. NFIX > 0 means state == NFIX is known at compile time;
// otherwise the runtime state count (<= MAXN) is used. Optional pointers may be null/dummy when
// their flag is off. Outputs: out[b,t,d], last[b,d,:], ckpt[b,c,d,:] = state entering chunk c.
// The forward's per-(b, d) state between chunks, so a caller may interleave channels chunk by chunk
// (the CPU walks a block's channels inside each chunk, for locality); scan_forward_channel runs one
// channel's chunks in order.
template <typename T, int MAXN>
struct ScanFwdCarry {
  T h[MAXN];
};

template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_forward_init(ScanParams p, int b, int d, const DF_DEVICE T* DFK_RESTRICT h0,
                                       DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  for (int n = 0; n < N; ++n) cy.h[n] = (p.flags & kScanHasH0) ? h0[((long)b * p.channels + d) * N + n] : T(0);
}

// Chunk c of one (b, d).
template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_forward_chunk(
    ScanParams p, int b, int d, int c,
    const DF_DEVICE T* DFK_RESTRICT u, const DF_DEVICE T* DFK_RESTRICT delta,
    const DF_DEVICE T* DFK_RESTRICT A, const DF_DEVICE T* DFK_RESTRICT B,
    const DF_DEVICE T* DFK_RESTRICT C, const DF_DEVICE T* DFK_RESTRICT D,
    const DF_DEVICE T* DFK_RESTRICT z, const DF_DEVICE T* DFK_RESTRICT bias,
    DF_DEVICE T* DFK_RESTRICT out, DF_DEVICE T* DFK_RESTRICT ckpt, DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  const int L = p.length, DC = p.channels;
  const bool has_z = (p.flags & kScanHasZ) != 0, softplus = (p.flags & kScanSoftplus) != 0;
  T a_row[MAXN], h[MAXN], ch[MAXN];
  for (int n = 0; n < MAXN; ++n) ch[n] = T(0);
  for (int n = 0; n < N; ++n) {
    a_row[n] = A[(long)d * N + n];
    h[n] = cy.h[n];
  }
  const T dd = (p.flags & kScanHasD) ? D[d] : T(0);
  const T bb = (p.flags & kScanHasBias) ? bias[d] : T(0);
  const long row = (long)b * L * DC + d;  // element (b, 0, d)
  T k_dt[kScanChunk], k_u[kScanChunk], k_y[kScanChunk], k_z[kScanChunk];
  for (int k = 0; k < kScanChunk; ++k) k_y[k] = T(0);  // the tail chunk leaves some unset

  {
    const int t0 = c * kScanChunk;
    const int len = L - t0 < kScanChunk ? L - t0 : kScanChunk;
    DF_DEVICE T* cp = ckpt + (((long)b * p.n_chunks + c) * DC + d) * N;
    for (int n = 0; n < N; ++n) cp[n] = h[n];

    // Per-step scalars over the whole chunk width (the tail chunk repeats its last step), so these
    // loops have a fixed trip count and vectorise over time.
    for (int k = 0; k < kScanChunk; ++k) {
      const long i = row + (long)(t0 + k < L ? t0 + k : L - 1) * DC;
      k_dt[k] = delta[i] + bb;
      k_u[k] = u[i];
    }
    if (softplus) {
      for (int k = 0; k < kScanChunk; ++k) k_dt[k] = scan_softplus(k_dt[k]);
    }
    for (int k = 0; k < len; ++k) {
      const T dt = k_dt[k], dtu = dt * k_u[k];
      const DF_DEVICE T* Bt = B + ((long)b * L + t0 + k) * N;
      const DF_DEVICE T* Ct = C + ((long)b * L + t0 + k) * N;
      for (int n = 0; n < N; ++n) {
        h[n] = scan_exp(dt * a_row[n]) * h[n] + dtu * Bt[n];
        ch[n] = Ct[n] * h[n];
      }
      k_y[k] = scan_hsum<T, MAXN>(ch);
    }
    for (int k = 0; k < kScanChunk; ++k) k_y[k] += dd * k_u[k];
    if (has_z) {
      for (int k = 0; k < kScanChunk; ++k) k_z[k] = z[row + (long)(t0 + k < L ? t0 + k : L - 1) * DC];
      for (int k = 0; k < kScanChunk; ++k) k_y[k] *= k_z[k] * scan_sigmoid(k_z[k]);
    }
    for (int k = 0; k < len; ++k) out[row + (long)(t0 + k) * DC] = k_y[k];
  }
  for (int n = 0; n < N; ++n) cy.h[n] = h[n];
}

template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_forward_finish(ScanParams p, int b, int d, DF_DEVICE T* DFK_RESTRICT last,
                                         DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  for (int n = 0; n < N; ++n) last[((long)b * p.channels + d) * N + n] = cy.h[n];
}

template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_forward_channel(
    ScanParams p, int b, int d,
    const DF_DEVICE T* DFK_RESTRICT u, const DF_DEVICE T* DFK_RESTRICT delta,
    const DF_DEVICE T* DFK_RESTRICT A, const DF_DEVICE T* DFK_RESTRICT B,
    const DF_DEVICE T* DFK_RESTRICT C, const DF_DEVICE T* DFK_RESTRICT D,
    const DF_DEVICE T* DFK_RESTRICT z, const DF_DEVICE T* DFK_RESTRICT bias,
    const DF_DEVICE T* DFK_RESTRICT h0,
    DF_DEVICE T* DFK_RESTRICT out, DF_DEVICE T* DFK_RESTRICT last, DF_DEVICE T* DFK_RESTRICT ckpt) {
  ScanFwdCarry<T, MAXN> cy;
  scan_forward_init<T, MAXN, NFIX>(p, b, d, h0, cy);
  for (int c = 0; c < p.n_chunks; ++c) {
    scan_forward_chunk<T, MAXN, NFIX>(p, b, d, c, u, delta, A, B, C, D, z, bias, out, ckpt, cy);
  }
  scan_forward_finish<T, MAXN, NFIX>(p, b, d, last, cy);
}

// ---- backward -------------------------------------------------------------------------------------
// Gradient buffers written by one (b, d):
//   du, ddelta, dz: [b,t,d];  dA_part, dh0: [b,d,:];  dD_part, dbias_part: [b,d]
//   dB_part, dC_part: [b, d / kScanBlock, t, :], through lane.reduce_to (sums over the block).
// sah/sa: recompute scratch for one chunk, addressed by lane.slot(k, n): exp(dt A) h_{t-1} and exp(dt A).
// Chunks run last to first: recompute the chunk's states from its checkpoint (forwards), then the
// adjoint lam = dL/dh_t backwards over it, carried into the previous chunk.
// The backward's per-(b, d) state between chunks (see ScanFwdCarry).
template <typename T, int MAXN>
struct ScanBwdCarry {
  T lam[MAXN], dA_acc[MAXN];
  T dD_acc, dbias_acc;
};

template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_backward_init(ScanParams p, int b, int d, const DF_DEVICE T* DFK_RESTRICT dlast,
                                        DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  for (int n = 0; n < N; ++n) {
    cy.lam[n] = dlast[((long)b * p.channels + d) * N + n];  // dL/dh_{L-1}, from last_state's cotangent
    cy.dA_acc[n] = T(0);
  }
  cy.dD_acc = T(0);
  cy.dbias_acc = T(0);
}

// Chunk c of one (b, d); chunks must come last to first.
template <typename T, int MAXN, int NFIX, typename Lane>
DFK_SCAN_INLINE void scan_backward_chunk(
    ScanParams p, int b, int d, int c, Lane lane,
    const DF_DEVICE T* DFK_RESTRICT u, const DF_DEVICE T* DFK_RESTRICT delta,
    const DF_DEVICE T* DFK_RESTRICT A, const DF_DEVICE T* DFK_RESTRICT B,
    const DF_DEVICE T* DFK_RESTRICT C, const DF_DEVICE T* DFK_RESTRICT D,
    const DF_DEVICE T* DFK_RESTRICT z, const DF_DEVICE T* DFK_RESTRICT bias,
    const DF_DEVICE T* DFK_RESTRICT ckpt, const DF_DEVICE T* DFK_RESTRICT dout,
    DF_DEVICE T* DFK_RESTRICT du, DF_DEVICE T* DFK_RESTRICT ddelta, DF_DEVICE T* DFK_RESTRICT dz,
    DF_DEVICE T* DFK_RESTRICT dB_part, DF_DEVICE T* DFK_RESTRICT dC_part,
    DF_DEVICE T* DFK_RESTRICT sah, DF_DEVICE T* DFK_RESTRICT sa, DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  const int L = p.length, DC = p.channels;
  const bool has_z = (p.flags & kScanHasZ) != 0, softplus = (p.flags & kScanSoftplus) != 0;
  const bool on = lane.active();
  T a_row[MAXN], h[MAXN], lam[MAXN], dA_acc[MAXN], v1[MAXN], v2[MAXN];
  for (int n = 0; n < MAXN; ++n) v1[n] = v2[n] = T(0);
  for (int n = 0; n < N; ++n) {
    a_row[n] = A[(long)d * N + n];
    lam[n] = cy.lam[n];
    dA_acc[n] = cy.dA_acc[n];
  }
  const T dd = (p.flags & kScanHasD) ? D[d] : T(0);
  const T bb = (p.flags & kScanHasBias) ? bias[d] : T(0);
  const long row = (long)b * L * DC + d;
  const long part_row = ((long)b * p.n_blocks + d / kScanBlock) * L;  // partial row (b, block, 0)
  T dD_acc = cy.dD_acc, dbias_acc = cy.dbias_acc;
  // Per-step scalars of the current chunk: dt, softplus', u, dL/dy, dz/dy... and results.
  T k_dt[kScanChunk], k_dsp[kScanChunk], k_u[kScanChunk], k_gy[kScanChunk], k_zf[kScanChunk];
  T k_y[kScanChunk], k_la[kScanChunk], k_lb[kScanChunk];

  {
    const int t0 = c * kScanChunk;
    const int len = L - t0 < kScanChunk ? L - t0 : kScanChunk;

    // Per-step scalars over the whole chunk width (the tail chunk repeats its last step), in
    // branch-free loops of fixed trip count so that they vectorise over time.
    for (int k = 0; k < kScanChunk; ++k) {
      const long i = row + (long)(t0 + k < L ? t0 + k : L - 1) * DC;
      k_u[k] = u[i];
      k_gy[k] = dout[i];
      k_dt[k] = delta[i] + bb;
    }
    if (softplus) {
      for (int k = 0; k < kScanChunk; ++k) {
        const T x = k_dt[k];
        k_dt[k] = scan_softplus(x);
        k_dsp[k] = scan_sigmoid(x);
      }
    } else {
      for (int k = 0; k < kScanChunk; ++k) k_dsp[k] = T(1);
    }
    if (has_z) {
      for (int k = 0; k < kScanChunk; ++k) k_zf[k] = z[row + (long)(t0 + k < L ? t0 + k : L - 1) * DC];
      for (int k = 0; k < kScanChunk; ++k) {
        const T g = k_gy[k], zt = k_zf[k], sz = scan_sigmoid(zt);
        k_gy[k] = g * zt * sz;                           // dL/dy = dL/dout * silu(z)
        k_zf[k] = g * sz * (T(1) + zt * (T(1) - sz));  // dL/dz = y * this
      }
    }

    // Recompute the chunk's states forwards; dC and y (for dz) need only forward quantities.
    const DF_DEVICE T* cp = ckpt + (((long)b * p.n_chunks + c) * DC + d) * N;
    for (int n = 0; n < N; ++n) h[n] = cp[n];
    // The decays first, for the whole chunk: independent of the state, so these exps pipeline
    // instead of sitting in the recurrence's dependency chain.
    for (int k = 0; k < len; ++k) {
      for (int n = 0; n < N; ++n) sa[lane.slot(k, n)] = scan_exp(k_dt[k] * a_row[n]);
    }
    for (int k = 0; k < len; ++k) {
      const int t = t0 + k;
      const T dtu = k_dt[k] * k_u[k], gy = k_gy[k];
      const DF_DEVICE T* Bt = B + ((long)b * L + t) * N;
      const DF_DEVICE T* Ct = C + ((long)b * L + t) * N;
      DF_DEVICE T* dCt = dC_part + (part_row + t) * N;
      for (int n = 0; n < N; ++n) {
        const T a = sa[lane.slot(k, n)];
        const T ah = a * h[n];
        sah[lane.slot(k, n)] = ah;
        h[n] = ah + dtu * Bt[n];
        v1[n] = Ct[n] * h[n];
        lane.reduce_to(dCt + n, gy * h[n]);
      }
      if (has_z) k_y[k] = scan_hsum<T, MAXN>(v1);
    }

    // Adjoint backwards over the chunk.
    for (int k = len - 1; k >= 0; --k) {
      const int t = t0 + k;
      const T dt = k_dt[k], gy = k_gy[k], dtu = dt * k_u[k];
      const DF_DEVICE T* Bt = B + ((long)b * L + t) * N;
      const DF_DEVICE T* Ct = C + ((long)b * L + t) * N;
      DF_DEVICE T* dBt = dB_part + (part_row + t) * N;
      for (int n = 0; n < N; ++n) {
        lam[n] += gy * Ct[n];                   // now dL/dh_t
        const T lah = lam[n] * sah[lane.slot(k, n)];
        v1[n] = lah * a_row[n];                 // d/d dt through exp(dt A)
        dA_acc[n] += lah * dt;
        v2[n] = lam[n] * Bt[n];                 // d/d(dt u) through the drive
        lane.reduce_to(dBt + n, lam[n] * dtu);
        lam[n] *= sa[lane.slot(k, n)];          // now dL/dh_{t-1} (minus the C term)
      }
      k_la[k] = scan_hsum<T, MAXN>(v1);
      k_lb[k] = scan_hsum<T, MAXN>(v2);
    }

    for (int k = 0; k < len; ++k) {
      const long i = row + (long)(t0 + k) * DC;
      const T dx = (k_la[k] + k_u[k] * k_lb[k]) * k_dsp[k];
      dbias_acc += dx;
      dD_acc += k_gy[k] * k_u[k];
      if (on) {
        du[i] = k_gy[k] * dd + k_dt[k] * k_lb[k];
        ddelta[i] = dx;
        if (has_z) dz[i] = (k_y[k] + dd * k_u[k]) * k_zf[k];
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
DFK_SCAN_INLINE void scan_backward_finish(ScanParams p, int b, int d, Lane lane,
                                          DF_DEVICE T* DFK_RESTRICT dA_part, DF_DEVICE T* DFK_RESTRICT dD_part,
                                          DF_DEVICE T* DFK_RESTRICT dbias_part, DF_DEVICE T* DFK_RESTRICT dh0,
                                          DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  if (lane.active()) {
    const long bd = (long)b * p.channels + d;
    for (int n = 0; n < N; ++n) {
      dh0[bd * N + n] = cy.lam[n];
      dA_part[bd * N + n] = cy.dA_acc[n];
    }
    if (p.flags & kScanHasD) dD_part[bd] = cy.dD_acc;
    if (p.flags & kScanHasBias) dbias_part[bd] = cy.dbias_acc;
  }
}

template <typename T, int MAXN, int NFIX, typename Lane>
DFK_SCAN_INLINE void scan_backward_channel(
    ScanParams p, int b, int d, Lane lane,
    const DF_DEVICE T* DFK_RESTRICT u, const DF_DEVICE T* DFK_RESTRICT delta,
    const DF_DEVICE T* DFK_RESTRICT A, const DF_DEVICE T* DFK_RESTRICT B,
    const DF_DEVICE T* DFK_RESTRICT C, const DF_DEVICE T* DFK_RESTRICT D,
    const DF_DEVICE T* DFK_RESTRICT z, const DF_DEVICE T* DFK_RESTRICT bias,
    const DF_DEVICE T* DFK_RESTRICT ckpt, const DF_DEVICE T* DFK_RESTRICT dout,
    const DF_DEVICE T* DFK_RESTRICT dlast,
    DF_DEVICE T* DFK_RESTRICT du, DF_DEVICE T* DFK_RESTRICT ddelta, DF_DEVICE T* DFK_RESTRICT dz,
    DF_DEVICE T* DFK_RESTRICT dA_part, DF_DEVICE T* DFK_RESTRICT dB_part,
    DF_DEVICE T* DFK_RESTRICT dC_part, DF_DEVICE T* DFK_RESTRICT dD_part,
    DF_DEVICE T* DFK_RESTRICT dbias_part, DF_DEVICE T* DFK_RESTRICT dh0,
    DF_DEVICE T* DFK_RESTRICT sah, DF_DEVICE T* DFK_RESTRICT sa) {
  ScanBwdCarry<T, MAXN> cy;
  scan_backward_init<T, MAXN, NFIX>(p, b, d, dlast, cy);
  for (int c = p.n_chunks - 1; c >= 0; --c) {
    scan_backward_chunk<T, MAXN, NFIX, Lane>(p, b, d, c, lane, u, delta, A, B, C, D, z, bias, ckpt, dout, du,
                                             ddelta, dz, dB_part, dC_part, sah, sa, cy);
  }
  scan_backward_finish<T, MAXN, NFIX, Lane>(p, b, d, lane, dA_part, dD_part, dbias_part, dh0, cy);
}

// dst[o, j] = sum over k < count of src[o, k, j], k in order: folds the backward's partials
// (dB, dC over channel blocks; dA, dD, dbias over batch) into the gradients. One thread per (j, o).
template <typename T>
DFK_SCAN_INLINE void scan_sum_partials(const DF_DEVICE T* DFK_RESTRICT src, DF_DEVICE T* DFK_RESTRICT dst,
                                       int count, long inner, long o, long j) {
  T s = T(0);
  for (int k = 0; k < count; ++k) s += src[(o * count + k) * inner + j];
  dst[o * inner + j] = s;
}

}  // namespace dfk
