// The compressed spectral loss terms (DeepFilterNet's SpectralLoss / MultiResSpecLoss core) kernel
// bodies, written once for the CPU primitive and the Metal kernels (DESIGN.md decision 1).
//
// For every complex value X = (re, im) of the prediction P and the target S, with c = gamma:
//   p2 = re^2 + im^2 + kSlEps,  |X| = sqrt(p2),  X~ = X |X|^(c-1)  (magnitude compressed to |X|^c)
//   mag  = mean over values of (|P|^c - |S|^c)^2
//   cplx = mean over values and (re, im) of (P~ - S~)^2
// Backward, per value (u = |P|^(c-2), v = |P|^(c-3); dmag, dcplx the cotangents):
//   d/dre = dmag * 2 (|P|^c - |S|^c) c u re / N
//         + dcplx * (A |P|^(c-1) + (c-1) v / |P| (A re + B im) re) / N,  A, B = re, im parts of P~ - S~
// and likewise for im; the target's gradient is the mirror image with the sign flipped.
// Values are (re, im) pairs, interleaved: a complex64 array or a real array with a last axis of 2.
//
// Forward: one work item per chunk of kSlChunk pairs writes that chunk's two partial sums; a fold
// adds the partials in chunk order (results do not depend on the thread count). Each item keeps
// kSlLanes running sums per term, one per lane of a group of pairs, so the CPU loop vectorises
// without reassociating a sum. Backward: elementwise, the same items.
#pragma once

#include "kernels/defines.h"

#if defined(__METAL_VERSION__)
#define DFK_SL_INLINE inline
#else
#define DFK_SL_INLINE inline __attribute__((always_inline))
#endif

namespace dfk {

enum SlConstants {
  kSlChunk = 4096,  // pairs per work item (and per partial-sum slot)
  kSlLanes = 16,    // running sums per term within an item
};

enum SlFlags {
  kSlGradPred = 1,    // the backward writes d pred
  kSlGradTarget = 2,  // the backward writes d target
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only).
struct SlParams {
  int pairs;     // N complex values
  int n_chunks;  // ceil(N / kSlChunk)
  int flags;
};

// Inside the square root: keeps d|X| finite at X = 0 (as dfnet4.train.losses did in pure MLX).
template <typename T>
DFK_SL_INLINE T sl_eps() { return T(1e-12); }

// One complex value's compressed quantities: s = |X|^(c-1), m = |X|^c, p2 = |X|^2 + eps.
template <typename T>
struct SlSide {
  T s, m, p2;
};

template <typename T>
DFK_SL_INLINE SlSide<T> sl_side(T re, T im, T gamma) {
  SlSide<T> q;
  q.p2 = re * re + im * im + sl_eps<T>();
  q.s = DF_MATH::pow(q.p2, (gamma - T(1)) * T(0.5));
  q.m = q.s * DF_MATH::sqrt(q.p2);
  return q;
}

#if !defined(__METAL_VERSION__)
// CPU float: |X|^e = exp(e/2 log p2) with a branch-free log and exp (no libm call, no errno), so
// the loops over pairs vectorise. log: p2 = 2^k f', f' in [sqrt(1/2), sqrt(2)), Cephes' degree-8
// series for log(1 + f) (relative error ~1e-7); exp: range reduction to |r| <= ln2/2, degree-6
// Taylor (< 2e-7), times 2^n in the exponent bits. NaN and +inf propagate as with pow.
DFK_SL_INLINE float sl_log(float x) {
  int bits;
  __builtin_memcpy(&bits, &x, sizeof(bits));
  int k = ((bits >> 23) & 0xff) - 126;  // x = 2^k * m, m in [0.5, 1) (x is normal: >= 1e-12)
  const int mbits = (bits & 0x007fffff) | 0x3f000000;
  float m;
  __builtin_memcpy(&m, &mbits, sizeof(m));
  const bool small = m < 0.707106781f;
  k = small ? k - 1 : k;
  const float f = (small ? m + m : m) - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float kf = (float)k;
  y += -2.12194440e-4f * kf;
  y += -0.5f * z;
  const float r = f + y + 0.693359375f * kf;
  return (x != x || x > 3.40282347e38f) ? x : r;  // NaN and +inf pass through
}

DFK_SL_INLINE float sl_exp(float x) {
  const float c = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // the range the bit trick covers
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const float t = c * 1.44269504f + shifter;
  const float n = t - shifter;
  float r = c - n * 0.693145752f;  // ln2 split in two for an exact n*ln2_hi
  r = r - n * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int ni;
  __builtin_memcpy(&ni, &t, sizeof(ni));
  ni -= 0x4B400000;  // the bits of `shifter`: leaves the integer n
  const int bits = (ni + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  const float e = p * scale;
  // past the clamp: overflow to +inf, underflow to 0, NaN through (as exp does)
  return x > 88.7228f ? __builtin_inff() : (x < -103.972f ? 0.0f : (x != x ? x : e));
}

template <>
DFK_SL_INLINE SlSide<float> sl_side<float>(float re, float im, float gamma) {
  SlSide<float> q;
  q.p2 = re * re + im * im + sl_eps<float>();
  const float l = sl_log(q.p2);
  q.s = sl_exp((gamma - 1.0f) * 0.5f * l);
  q.m = sl_exp(gamma * 0.5f * l);
  return q;
}
#endif

// x sx - y sy (one component of P~ - S~) as (x - y) sx + y (sx - sy): exactly 0 when the prediction
// equals the target whether or not the compiler fuses a multiply-add, and free of the cancellation
// of two nearly equal products when they are close.
template <typename T>
DFK_SL_INLINE T sl_diff(T x, T y, T sx, T sy) { return (x - y) * sx + y * (sx - sy); }

// ---- forward ---------------------------------------------------------------------------------------
// The chunk's sums of the magnitude and complex terms -> part[2 * chunk + 0, 1].
template <typename T>
DFK_SL_INLINE void sl_forward_item(SlParams p, int chunk, T gamma, const DF_DEVICE T* pred,
                                   const DF_DEVICE T* target, DF_DEVICE T* part) {
  T sm[kSlLanes], sc[kSlLanes];
  for (int l = 0; l < kSlLanes; ++l) sm[l] = sc[l] = T(0);
  const long i0 = (long)chunk * kSlChunk;
  const long i1 = i0 + kSlChunk < p.pairs ? i0 + kSlChunk : (long)p.pairs;
  for (long g = i0; g < i1; g += kSlLanes) {
    const int n = i1 - g < kSlLanes ? (int)(i1 - g) : (int)kSlLanes;
    for (int l = 0; l < n; ++l) {
      const long i = g + l;
      const T pr = pred[2 * i], pi = pred[2 * i + 1], tr = target[2 * i], ti = target[2 * i + 1];
      const SlSide<T> P = sl_side(pr, pi, gamma), S = sl_side(tr, ti, gamma);
      const T dm = P.m - S.m, a = sl_diff(pr, tr, P.s, S.s), b = sl_diff(pi, ti, P.s, S.s);
      sm[l] += dm * dm;
      sc[l] += a * a + b * b;
    }
  }
  T tm = T(0), tc = T(0);
  for (int l = 0; l < kSlLanes; ++l) {
    tm += sm[l];
    tc += sc[l];
  }
  part[2 * (long)chunk] = tm;
  part[2 * (long)chunk + 1] = tc;
}

// *out = term k's mean (k = 0: mag, 1: cplx): the partials folded in chunk order.
template <typename T>
DFK_SL_INLINE void sl_fold(SlParams p, int k, const DF_DEVICE T* part, DF_DEVICE T* out) {
  T s = T(0);
  for (int c = 0; c < p.n_chunks; ++c) s += part[2 * (long)c + k];
  out[0] = s / (T(p.pairs) * (k == 0 ? T(1) : T(2)));
}

// ---- backward --------------------------------------------------------------------------------------
// d pred and/or d target (flags) for the chunk's pairs; dmag, dcplx are the scalar cotangents.
template <typename T>
DFK_SL_INLINE void sl_backward_item(SlParams p, int chunk, T gamma, const DF_DEVICE T* pred,
                                    const DF_DEVICE T* target, const DF_DEVICE T* dmag, const DF_DEVICE T* dcplx,
                                    DF_DEVICE T* dpred, DF_DEVICE T* dtarget) {
  const T gm = T(2) * dmag[0] / T(p.pairs);        // d mag / d (|P|^c - |S|^c)^2-term
  const T gc = T(2) * dcplx[0] / (T(2) * T(p.pairs));  // d cplx / d (A^2 + B^2)-term
  const T cm1 = gamma - T(1);
  const bool want_p = (p.flags & kSlGradPred) != 0, want_t = (p.flags & kSlGradTarget) != 0;
  const long i0 = (long)chunk * kSlChunk;
  const long i1 = i0 + kSlChunk < p.pairs ? i0 + kSlChunk : (long)p.pairs;
  T d0[kSlLanes], d1[kSlLanes], d2[kSlLanes], d3[kSlLanes];  // d pred (re, im), d target (re, im)
  for (long g = i0; g < i1; g += kSlLanes) {
    const int n = i1 - g < kSlLanes ? (int)(i1 - g) : (int)kSlLanes;
    for (int l = 0; l < n; ++l) {  // no branches: vectorises on the CPU
      const long i = g + l;
      const T pr = pred[2 * i], pi = pred[2 * i + 1], tr = target[2 * i], ti = target[2 * i + 1];
      const SlSide<T> P = sl_side(pr, pi, gamma), S = sl_side(tr, ti, gamma);
      const T dm = gm * (P.m - S.m) * gamma, a = sl_diff(pr, tr, P.s, S.s), b = sl_diff(pi, ti, P.s, S.s);
      // |X|^(c-2) = s^2 / m;  |X|^(c-3) / |X| = s / p2
      const T up = P.s * P.s / P.m, vp = gc * cm1 * P.s / P.p2 * (a * pr + b * pi);
      const T us = S.s * S.s / S.m, vs = gc * cm1 * S.s / S.p2 * (a * tr + b * ti);
      d0[l] = dm * up * pr + gc * a * P.s + vp * pr;
      d1[l] = dm * up * pi + gc * b * P.s + vp * pi;
      d2[l] = -(dm * us * tr + gc * a * S.s + vs * tr);
      d3[l] = -(dm * us * ti + gc * b * S.s + vs * ti);
    }
    if (want_p) {
      for (int l = 0; l < n; ++l) {
        dpred[2 * (g + l)] = d0[l];
        dpred[2 * (g + l) + 1] = d1[l];
      }
    }
    if (want_t) {
      for (int l = 0; l < n; ++l) {
        dtarget[2 * (g + l)] = d2[l];
        dtarget[2 * (g + l) + 1] = d3[l];
      }
    }
  }
}

}  // namespace dfk
