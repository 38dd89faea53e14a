// Selective scan kernel bodies (mamba-ssm's selective_scan_fn, real A, channels-last), written once
// for the CPU primitive and the Metal kernels (DESIGN.md decision 1). One logical thread owns one
// (batch, channel) pair and keeps its `state` values in a local array; on the GPU they stay in
// registers. The bodies are templated on the value type T that such a thread computes with: on
// Metal T = float (one thread = one channel); the CPU driver also runs them with T = ScanF16, a
// vector of 16 floats, so one "thread" is 16 neighbouring channels, one per SIMD lane (see
// ScanValue below).
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

// CPU builds with GCC >= 12 (vector ?: with scalar operands, __builtin_shufflevector, bit casts of
// vectors) run 16 channels per vector; others (clang: not tried) one channel at a time.
#if !defined(__METAL_VERSION__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define DFK_SCAN_LANES 16
#else
#define DFK_SCAN_LANES 1
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

// ---- value types ------------------------------------------------------------------------------------
// ScanValue<T>: how a thread's value type T meets the buffers, whose element type is S. Scalar T
// (float; double on the CPU): one channel, plain loads. Per-channel arrays are either contiguous over
// channels ((batch, time, channels) and (channels,) arrays: load/store) or `stride` apart
// ((channels, state)-shaped rows of A, h0, last...: load_strided/store_strided).
template <typename T>
struct ScanValue {
  typedef T S;
  static DFK_SCAN_INLINE T splat(S s) { return s; }
  static DFK_SCAN_INLINE T load(const DF_DEVICE S* p) { return *p; }
  static DFK_SCAN_INLINE T load_strided(const DF_DEVICE S* p, long) { return *p; }
  static DFK_SCAN_INLINE void store(DF_DEVICE S* p, T v) { *p = v; }
  static DFK_SCAN_INLINE void store_strided(DF_DEVICE S* p, long, T v) { *p = v; }
};

template <typename T>
using ScanScalar = typename ScanValue<T>::S;

#if DFK_SCAN_LANES > 1
// Everything that takes or returns these 64-byte vectors is always-inline, so no call passes one
// and GCC's note that such calls change ABI between ISA levels (the CPU driver's target_clones)
// does not apply. (Left on for the including file: the note is emitted at its end.)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if !defined(__METAL_VERSION__)
typedef float ScanF16 __attribute__((vector_size(64)));
typedef int ScanI16 __attribute__((vector_size(64)));
typedef unsigned ScanU16 __attribute__((vector_size(64)));
#endif

#if DFK_SCAN_LANES > 1
// 16 channels at once: lane l is channel d + l. B and C (shared by all channels) enter as scalars
// that the vector arithmetic broadcasts.
template <>
struct ScanValue<ScanF16> {
  typedef float S;
  static DFK_SCAN_INLINE ScanF16 splat(float s) { return ScanF16{} + s; }
  static DFK_SCAN_INLINE ScanF16 load(const float* p) {
    ScanF16 v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
  }
  static DFK_SCAN_INLINE ScanF16 load_strided(const float* p, long stride) {
    ScanF16 v;
    for (int l = 0; l < 16; ++l) v[l] = p[l * stride];
    return v;
  }
  static DFK_SCAN_INLINE void store(float* p, ScanF16 v) { __builtin_memcpy(p, &v, sizeof(v)); }
  static DFK_SCAN_INLINE void store_strided(float* p, long stride, ScanF16 v) {
    for (int l = 0; l < 16; ++l) p[l * stride] = v[l];
  }
};
#endif

// Bit access for the float math below: I/U are the matching (vector of) int/unsigned.
template <typename T>
struct ScanBits;

template <>
struct ScanBits<float> {
  typedef int I;
  typedef unsigned U;
#if defined(__METAL_VERSION__)
  static DFK_SCAN_INLINE I bits(float x) { return as_type<int>(x); }
  static DFK_SCAN_INLINE float from_bits(U x) { return as_type<float>(x); }
#else
  static DFK_SCAN_INLINE I bits(float x) { return __builtin_bit_cast(int, x); }
  static DFK_SCAN_INLINE float from_bits(U x) { return __builtin_bit_cast(float, x); }
#endif
  static DFK_SCAN_INLINE float from_int(I x) { return (float)x; }
};

#if DFK_SCAN_LANES > 1
template <>
struct ScanBits<ScanF16> {
  typedef ScanI16 I;
  typedef ScanU16 U;
  static DFK_SCAN_INLINE I bits(ScanF16 x) { return __builtin_bit_cast(I, x); }
  static DFK_SCAN_INLINE ScanF16 from_bits(U x) { return __builtin_bit_cast(ScanF16, x); }
  static DFK_SCAN_INLINE ScanF16 from_int(I x) { return __builtin_convertvector(x, ScanF16); }
};
#endif

// ---- exp: vectorisable, same code on CPU and GPU --------------------------------------------------
// float: Cephes-style range reduction x = k ln2 + r, |r| <= ln2/2, degree-6 polynomial (about 1 ulp),
// scaled by 2^k built from exponent bits. Branch-free (selects only) so loops over it vectorise, and
// written for T = float or a vector of floats alike (scalar constants broadcast).
// x below about -86.99 returns 0 (true value < 1.7e-38: no denormals); x > ln(FLT_MAX) returns inf;
// NaN propagates through the polynomial. double (CPU only) uses the library exp (specialised below).
// (Specialisations rather than derived classes throughout: MSL has none.)
template <typename T>
struct ScanExp {
  typedef ScanBits<T> Bits;
  typedef typename Bits::U U;
  // Range limits as functions: MSL allows static data members only in the constant address space.
  // For x in [lo, hi], k = round(x log2(e)) lies in [-126, 128].
  static DFK_SCAN_INLINE float lo() { return -87.5f; }
  static DFK_SCAN_INLINE float hi() { return 89.0f; }
  // exp(x) for x in [lo, hi] (NaN in, NaN out).
  static DFK_SCAN_INLINE T core(T x) {
    // Round x*log2(e) to an integer with the 1.5*2^23 trick: the sum's low mantissa bits hold it.
    const T shifted = x * 1.44269504088896341f + 12582912.0f;
    const typename Bits::I k = Bits::bits(shifted) - 0x4B400000;
    const T kf = shifted - 12582912.0f;
    T r = x - kf * 0.693359375f;  // ln2 split in two: the first product is exact
    r = r - kf * -2.12194440e-4f;
    T p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    // 2^k as 2^(k-1) * 2, from exponent bits k + 126 in [0, 254]: k = 128 stays representable
    // (and overflows to inf exactly when x > ln(FLT_MAX)); k = -126 gives the scale 0 (flush).
    const U bits = (U)(k + 126) << 23;
    return p * Bits::from_bits(bits) * 2.0f;
  }
  // Clamping x into [lo, hi] is all the range handling needed (see core).
  static DFK_SCAN_INLINE T eval(T x) {
    const float lo_ = lo(), hi_ = hi();
    T xc = x < lo_ ? lo_ : x;  // comparisons are false for NaN: NaN flows on
    xc = xc > hi_ ? hi_ : xc;
    return core(xc);
  }
};

template <typename T>
DFK_SCAN_INLINE T scan_exp(T x) { return ScanExp<T>::eval(x); }

template <typename T>
DFK_SCAN_INLINE T scan_sigmoid(T x) {
  typedef ScanScalar<T> S;
  return S(1) / (S(1) + scan_exp(-x));
}

// log(y) for y in [1, 2] (all softplus needs): Cephes' logf, y = m 2^e with m in [sqrt(1/2), sqrt(2)),
// a degree-9 polynomial in m - 1 (about 1 ulp). Branch-free so it vectorises. double: library log.
template <typename T>
struct ScanLog12 {
  typedef ScanBits<T> Bits;
  static DFK_SCAN_INLINE T eval(T y) {
    // Shift the bits so the mantissa lands in [sqrt(1/2), sqrt(2)) without selects.
    const typename Bits::I ix = Bits::bits(y) - 0x3f3504f3;
    const T e = Bits::from_int(ix >> 23);
    const T m = Bits::from_bits((typename Bits::U)((ix & 0x007fffff) + 0x3f3504f3)) - 1.0f;
    const T z = m * m;
    T p = m * 7.0376836292e-2f - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    T r = m * z * p;
    r = r + e * -2.12194440e-4f;
    r = r - 0.5f * z;
    return m + r + e * 0.693359375f;
  }
};

// softplus(x) = log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): no overflow. A NaN x stays NaN
// through the first term, whatever the second computes from it.
template <typename T>
struct ScanSoftplus {
  typedef ScanBits<T> Bits;
  typedef typename Bits::U U;
  static DFK_SCAN_INLINE T eval(T x) {
    // Shaped so GCC vectorises loops over it (a float select here defeats its if-conversion):
    // max(x, 0) as (x + |x|) / 2, which also carries a NaN through; exp(-|x|) needs only |x|
    // clamped to 86.5 (beyond, 1 + exp rounds to 1), done as an integer min on the bit pattern
    // (ordered like the values for non-negative floats).
    const T ax = Bits::from_bits((U)Bits::bits(x) & 0x7fffffffu);
    const int lim = 0x42ad0000;  // bits of 86.5f
    typename Bits::I ab = Bits::bits(ax);
    ab = ab < lim ? ab : lim;
    const T e = -Bits::from_bits((U)ab);
    return 0.5f * (x + ax) + ScanLog12<T>::eval(1.0f + ScanExp<T>::core(e));
  }
};

#if !defined(__METAL_VERSION__)
template <>
struct ScanExp<double> {
  static DFK_SCAN_INLINE double eval(double x) { return std::exp(x); }
};
template <>
struct ScanSoftplus<double> {
  static DFK_SCAN_INLINE double eval(double x) { return (x < 0 ? 0 : x) + std::log1p(std::exp(-std::abs(x))); }
};
#endif

template <typename T>
DFK_SCAN_INLINE T scan_softplus(T x) { return ScanSoftplus<T>::eval(x); }

// Sum of v[0..MAXN) (entries at or past the runtime state count must be 0). The state loops store
// their per-state terms into such an array and sum it here, so the loops themselves stay purely
// elementwise (vectorisable without reassociation flags). On the CPU the common float x 16 case is a
// shuffle tree on one vector register; otherwise (also for vectors of channels: lane-wise) pairwise
// halving. (__builtin_shufflevector: clang, GCC >= 12.)
#if !defined(__METAL_VERSION__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define DFK_SCAN_VECTOR_HSUM 1
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

#if DFK_SCAN_LANES > 1
// Lane sums of 16 vectors at once: result[j] = sum over the 16 lanes of v[j]. A transpose-and-add
// butterfly (15 pairs of single-instruction shuffles and 15 adds) instead of 16 horizontal sums.
// Levels 1-2 combine whole halves/quarters, levels 3-4 stay inside 128-bit blocks; that leaves the
// sum of input i in lane 4 (i % 4) + i / 4, so the inputs go in in that (self-inverse) order.
DFK_SCAN_INLINE ScanF16 scan_lane_sums(const ScanF16* v) {
  ScanF16 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {
    const int i0 = 2 * i, i1 = 2 * i + 1;
    const ScanF16 x = v[4 * (i0 % 4) + i0 / 4], y = v[4 * (i1 % 4) + i1 / 4];
    a[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  }
  for (int i = 0; i < 4; ++i) {
    const ScanF16 x = a[2 * i], y = a[2 * i + 1];
    b[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  }
  for (int i = 0; i < 2; ++i) {
    const ScanF16 x = b[2 * i], y = b[2 * i + 1];
    c[i] = __builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
           __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  }
  return __builtin_shufflevector(c[0], c[1], 0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30) +
         __builtin_shufflevector(c[0], c[1], 1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31);
}
#endif

// How one logical thread sends its per-channel terms into sums over its block's channels.
// CPU: one OS thread walks the block's channels (one at a time, or 16 per vector) and adds into the
// partial (zeroed beforehand). Scratch for the recompute is a private, contiguous array.
template <int MAXN>
struct ScanCpuLane {
  DFK_SCAN_INLINE bool active() const { return true; }
  DFK_SCAN_INLINE long slot(int k, int n) const { return (long)k * MAXN + n; }
  // dst[n] += v[n] for n < N.
  template <typename T>
  DFK_SCAN_INLINE void reduce_row(DF_DEVICE T* dst, DF_THREAD const T* v, int N) const {
    for (int n = 0; n < N; ++n) dst[n] += v[n];
  }
#if DFK_SCAN_LANES > 1
  // dst[n] += (sum over the 16 channels of v[n]) for n < N; v has MAXN (a multiple of 16) entries.
  DFK_SCAN_INLINE void reduce_row(float* dst, const ScanF16* v, int N) const {
    typedef ScanValue<ScanF16> VT;
    for (int n0 = 0; n0 < N; n0 += 16) {
      const ScanF16 s = scan_lane_sums(v + n0);
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
  DFK_SCAN_INLINE bool active() const { return on; }
  DFK_SCAN_INLINE long slot(int k, int n) const { return ((long)k * MAXN + n) * n_threads + thread_id; }
  // dst[n] = sum over the SIMD-group's lanes of v[n], n < N.
  template <typename T>
  DFK_SCAN_INLINE void reduce_row(DF_DEVICE T* dst, DF_THREAD const T* v, int N) const {
    for (int n = 0; n < N; ++n) {
      const T s = simd_sum(on ? v[n] : T(0));
      if (simd_lane == 0) dst[n] = s;
    }
  }
};
#endif

// ---- state loops ----------------------------------------------------------------------------------
// ScanStates<T>::each(N, f) calls f(n) for every state n < N: the recurrences' loops over state, with
// their bodies as the functors below (MSL has no lambdas). Scalar T: a plain loop, which GCC
// vectorises over the states. CPU vectors of channels: fully unrolled, so that the per-state arrays
// stay in registers instead of memory (6-7 % per loop); the same pragma on the scalar loops would
// make GCC unroll them before vectorising them (3-4x slower).
template <typename T>
struct ScanStates {
  template <typename F>
  static DFK_SCAN_INLINE void each(int N, F f) {
    for (int n = 0; n < N; ++n) f(n);
  }
};

#if DFK_SCAN_LANES > 1
template <>
struct ScanStates<ScanF16> {
  template <typename F>
  static DFK_SCAN_INLINE void each(int N, F f) {
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n) f(n);
  }
};
#endif

// Forward step, state n: h = exp(dt A) h + dt u B_t; ch = its term of y = sum_n C_t h.
template <typename T>
struct ScanFwdState {
  DF_THREAD T* h;
  DF_THREAD T* ch;
  DF_THREAD const T* a;  // A's row
  T dt, dtu;
  const DF_DEVICE ScanScalar<T>* Bt;
  const DF_DEVICE ScanScalar<T>* Ct;
  DFK_SCAN_INLINE void operator()(int n) const {
    h[n] = scan_exp(dt * a[n]) * h[n] + dtu * Bt[n];
    ch[n] = Ct[n] * h[n];
  }
};

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
  const DF_DEVICE ScanScalar<T>* Bt;
  const DF_DEVICE ScanScalar<T>* Ct;
  DFK_SCAN_INLINE void operator()(int n) const {
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
  const DF_DEVICE ScanScalar<T>* Bt;
  const DF_DEVICE ScanScalar<T>* Ct;
  DFK_SCAN_INLINE void operator()(int n) const {
    lam[n] += gy * Ct[n];  // now dL/dh_t
    const T lah = lam[n] * sah[lane.slot(k, n)];
    la[n] = lah * a[n];
    dA_acc[n] += lah * dt;
    lb[n] = lam[n] * Bt[n];
    w[n] = lam[n] * dtu;
    lam[n] *= sa[lane.slot(k, n)];  // now dL/dh_{t-1} (minus the C term)
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
DFK_SCAN_INLINE void scan_forward_init(ScanParams p, int b, int d, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT A,
                                       const DF_DEVICE ScanScalar<T>* DFK_RESTRICT h0,
                                       DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  typedef ScanValue<T> VT;
  const int N = NFIX > 0 ? NFIX : p.state;
  const long bd = (long)b * p.channels + d;
  for (int n = 0; n < N; ++n) {
    cy.a[n] = VT::load_strided(A + (long)d * N + n, N);
    cy.h[n] = (p.flags & kScanHasH0) ? VT::load_strided(h0 + bd * N + n, N) : T{};
  }
}

// Chunk c of one (b, d).
template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_forward_chunk(
    ScanParams p, int b, int d, int c,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT u, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT delta,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT B, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT C,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT D, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT z,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT bias, DF_DEVICE ScanScalar<T>* DFK_RESTRICT out,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT ckpt, DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  typedef ScanValue<T> VT;
  typedef ScanScalar<T> S;
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
      for (int k = 0; k < kScanChunk; ++k) k_dt[k] = scan_softplus(k_dt[k]);
    }
    for (int k = 0; k < len; ++k) {
      const T dt = k_dt[k], dtu = dt * k_u[k];
      const DF_DEVICE S* Bt = B + ((long)b * L + t0 + k) * N;
      const DF_DEVICE S* Ct = C + ((long)b * L + t0 + k) * N;
      const ScanFwdState<T> step = {h, ch, cy.a, dt, dtu, Bt, Ct};
      ScanStates<T>::each(N, step);
      k_y[k] = scan_hsum<T, MAXN>(ch);
    }
    for (int k = 0; k < kScanChunk; ++k) k_y[k] += dd * k_u[k];
    if (has_z) {
      for (int k = 0; k < kScanChunk; ++k) k_z[k] = VT::load(z + row + (long)(t0 + k < L ? t0 + k : L - 1) * DC);
      for (int k = 0; k < kScanChunk; ++k) k_y[k] *= k_z[k] * scan_sigmoid(k_z[k]);
    }
    for (int k = 0; k < len; ++k) VT::store(out + row + (long)(t0 + k) * DC, k_y[k]);
  }
  for (int n = 0; n < N; ++n) cy.h[n] = h[n];
}

template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_forward_finish(ScanParams p, int b, int d, DF_DEVICE ScanScalar<T>* DFK_RESTRICT last,
                                         DF_THREAD ScanFwdCarry<T, MAXN>& cy) {
  const int N = NFIX > 0 ? NFIX : p.state;
  const long bd = (long)b * p.channels + d;
  for (int n = 0; n < N; ++n) ScanValue<T>::store_strided(last + bd * N + n, N, cy.h[n]);
}

template <typename T, int MAXN, int NFIX>
DFK_SCAN_INLINE void scan_forward_channel(
    ScanParams p, int b, int d,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT u, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT delta,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT A, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT B,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT C, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT D,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT z, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT bias,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT h0, DF_DEVICE ScanScalar<T>* DFK_RESTRICT out,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT last, DF_DEVICE ScanScalar<T>* DFK_RESTRICT ckpt) {
  ScanFwdCarry<T, MAXN> cy;
  scan_forward_init<T, MAXN, NFIX>(p, b, d, A, h0, cy);
  for (int c = 0; c < p.n_chunks; ++c) {
    scan_forward_chunk<T, MAXN, NFIX>(p, b, d, c, u, delta, B, C, D, z, bias, out, ckpt, cy);
  }
  scan_forward_finish<T, MAXN, NFIX>(p, b, d, last, cy);
}

// ---- backward -------------------------------------------------------------------------------------
// Gradient buffers written by one (b, d):
//   du, ddelta, dz: [b,t,d];  dA_part, dh0: [b,d,:];  dD_part, dbias_part: [b,d]
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
DFK_SCAN_INLINE void scan_backward_init(ScanParams p, int b, int d, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT A,
                                        const DF_DEVICE ScanScalar<T>* DFK_RESTRICT dlast,
                                        DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  typedef ScanValue<T> VT;
  const int N = NFIX > 0 ? NFIX : p.state;
  const long bd = (long)b * p.channels + d;
  for (int n = 0; n < N; ++n) {
    cy.lam[n] = VT::load_strided(dlast + bd * N + n, N);  // dL/dh_{L-1}, from last_state's cotangent
    cy.dA_acc[n] = T{};
    cy.a[n] = VT::load_strided(A + (long)d * N + n, N);
  }
  cy.dD_acc = T{};
  cy.dbias_acc = T{};
}

// Chunk c of one (b, d); chunks must come last to first.
template <typename T, int MAXN, int NFIX, typename Lane>
DFK_SCAN_INLINE void scan_backward_chunk(
    ScanParams p, int b, int d, int c, Lane lane,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT u, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT delta,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT B, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT C,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT D, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT z,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT bias, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT ckpt,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT dout, DF_DEVICE ScanScalar<T>* DFK_RESTRICT du,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT ddelta, DF_DEVICE ScanScalar<T>* DFK_RESTRICT dz,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT dB_part, DF_DEVICE ScanScalar<T>* DFK_RESTRICT dC_part,
    DF_DEVICE T* DFK_RESTRICT sah, DF_DEVICE T* DFK_RESTRICT sa, DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  typedef ScanValue<T> VT;
  typedef ScanScalar<T> S;
  const int N = NFIX > 0 ? NFIX : p.state;
  const int L = p.length, DC = p.channels;
  const bool has_z = (p.flags & kScanHasZ) != 0, softplus = (p.flags & kScanSoftplus) != 0;
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
  T k_y[kScanChunk], k_la[kScanChunk], k_lb[kScanChunk];

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
        k_dt[k] = scan_softplus(x);
        k_dsp[k] = scan_sigmoid(x);
      }
    } else {
      for (int k = 0; k < kScanChunk; ++k) k_dsp[k] = VT::splat(S(1));
    }
    if (has_z) {
      for (int k = 0; k < kScanChunk; ++k) k_zf[k] = VT::load(z + row + (long)(t0 + k < L ? t0 + k : L - 1) * DC);
      for (int k = 0; k < kScanChunk; ++k) {
        const T g = k_gy[k], zt = k_zf[k], sz = scan_sigmoid(zt);
        k_gy[k] = g * zt * sz;                           // dL/dy = dL/dout * silu(z)
        k_zf[k] = g * sz * (S(1) + zt * (S(1) - sz));  // dL/dz = y * this
      }
    }

    // Recompute the chunk's states forwards; dC and y (for dz) need only forward quantities.
    const DF_DEVICE S* cp = ckpt + ((long)b * p.n_chunks + c) * N * DC + d;
    for (int n = 0; n < N; ++n) h[n] = VT::load(cp + (long)n * DC);
    // The decays first, for the whole chunk: independent of the state, so these exps pipeline
    // instead of sitting in the recurrence's dependency chain.
    for (int k = 0; k < len; ++k) {
      for (int n = 0; n < N; ++n) sa[lane.slot(k, n)] = scan_exp(k_dt[k] * cy.a[n]);
    }
    for (int k = 0; k < len; ++k) {
      const int t = t0 + k;
      const T dtu = k_dt[k] * k_u[k], gy = k_gy[k];
      const DF_DEVICE S* Bt = B + ((long)b * L + t) * N;
      const DF_DEVICE S* Ct = C + ((long)b * L + t) * N;
      const ScanBwdRecompute<T, Lane> step = {lane, k, sah, sa, h, v1, w, dtu, gy, Bt, Ct};
      ScanStates<T>::each(N, step);
      lane.reduce_row(dC_part + (part_row + t) * N, w, N);
      if (has_z) k_y[k] = scan_hsum<T, MAXN>(v1);
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
      k_la[k] = scan_hsum<T, MAXN>(v1);
      k_lb[k] = scan_hsum<T, MAXN>(v2);
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
                                          DF_DEVICE ScanScalar<T>* DFK_RESTRICT dA_part,
                                          DF_DEVICE ScanScalar<T>* DFK_RESTRICT dD_part,
                                          DF_DEVICE ScanScalar<T>* DFK_RESTRICT dbias_part,
                                          DF_DEVICE ScanScalar<T>* DFK_RESTRICT dh0,
                                          DF_THREAD ScanBwdCarry<T, MAXN>& cy) {
  typedef ScanValue<T> VT;
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
DFK_SCAN_INLINE void scan_backward_channel(
    ScanParams p, int b, int d, Lane lane,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT u, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT delta,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT A, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT B,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT C, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT D,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT z, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT bias,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT ckpt, const DF_DEVICE ScanScalar<T>* DFK_RESTRICT dout,
    const DF_DEVICE ScanScalar<T>* DFK_RESTRICT dlast,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT du, DF_DEVICE ScanScalar<T>* DFK_RESTRICT ddelta,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT dz, DF_DEVICE ScanScalar<T>* DFK_RESTRICT dA_part,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT dB_part, DF_DEVICE ScanScalar<T>* DFK_RESTRICT dC_part,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT dD_part, DF_DEVICE ScanScalar<T>* DFK_RESTRICT dbias_part,
    DF_DEVICE ScanScalar<T>* DFK_RESTRICT dh0, DF_DEVICE T* DFK_RESTRICT sah, DF_DEVICE T* DFK_RESTRICT sa) {
  ScanBwdCarry<T, MAXN> cy;
  scan_backward_init<T, MAXN, NFIX>(p, b, d, A, dlast, cy);
  for (int c = p.n_chunks - 1; c >= 0; --c) {
    scan_backward_chunk<T, MAXN, NFIX, Lane>(p, b, d, c, lane, u, delta, B, C, D, z, bias, ckpt, dout, du,
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
