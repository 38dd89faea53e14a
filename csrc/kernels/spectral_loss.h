// The compressed spectral loss terms (DeepFilterNet's SpectralLoss / MultiResSpecLoss core) kernel
// bodies, written once for the CPU primitive and the Metal kernels. Parameters: spectral_loss_params.h.
//
// For every complex value X = (re, im) of the prediction P and the target S, with c = gamma:
//   p2 = re^2 + im^2 + 1e-12,  |X| = sqrt(p2),  X~ = X |X|^(c-1)  (magnitude compressed to |X|^c)
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
#include "kernels/fast_math.h"
#include "kernels/spectral_loss_params.h"

namespace dfk {

// Inside the square root: keeps d|X| finite at X = 0 (as dfnet4.train.losses did in pure MLX).
template <typename T>
DF_INLINE T sl_eps() { return T(1e-12); }

// log(x) for x > 0. float (CPU and Metal alike): Cephes' logf of fast_math.h (its bit shifts hold
// for every positive normal float, not only on [1, 2]), with NaN and +inf passed through as log
// does; double (CPU only): the math library.
template <typename T>
DF_INLINE T sl_log(T x) {
  const T l = fastmath::Log12<T>::eval(x);
  return (x != x || x > T(3.40282347e38f)) ? x : l;
}
#if !defined(__METAL_VERSION__)
template <>
DF_INLINE double sl_log<double>(double x) { return std::log(x); }
#endif

// One complex value's compressed quantities: s = |X|^(c-1), m = |X|^c, p2 = |X|^2 + eps, the powers
// as exp(e/2 log p2) (branch-free for float: the CPU's loops over pairs vectorise).
template <typename T>
struct SlSide {
  T s, m, p2;
};

template <typename T>
DF_INLINE SlSide<T> sl_side(T re, T im, T gamma) {
  SlSide<T> q;
  q.p2 = re * re + im * im + sl_eps<T>();
  const T l = sl_log(q.p2) * T(0.5);
  q.s = fastmath::exp((gamma - T(1)) * l);
  q.m = fastmath::exp(gamma * l);
  return q;
}

// x sx - y sy (one component of P~ - S~) as (x - y) sx + y (sx - sy): exactly 0 when the prediction
// equals the target whether or not the compiler fuses a multiply-add, and free of the cancellation
// of two nearly equal products when they are close.
template <typename T>
DF_INLINE T sl_diff(T x, T y, T sx, T sy) { return (x - y) * sx + y * (sx - sy); }

// ---- forward ---------------------------------------------------------------------------------------
// The chunk's sums of the magnitude and complex terms -> part[2 * chunk + 0, 1].
template <typename T>
DF_INLINE void sl_forward_item(SlParams p, int chunk, T gamma, const DF_DEVICE T* pred,
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
DF_INLINE void sl_fold(SlParams p, int k, const DF_DEVICE T* part, DF_DEVICE T* out) {
  T s = T(0);
  for (int c = 0; c < p.n_chunks; ++c) s += part[2 * (long)c + k];
  out[0] = s / (T(p.pairs) * (k == 0 ? T(1) : T(2)));
}

// ---- backward --------------------------------------------------------------------------------------
// d pred and/or d target (flags) for the chunk's pairs; dmag, dcplx are the scalar cotangents.
template <typename T>
DF_INLINE void sl_backward_item(SlParams p, int chunk, T gamma, const DF_DEVICE T* pred,
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
