// RMSNorm kernel bodies (the math of mx.fast.rms_norm), written once for the CPU primitive and the
// Metal kernels (one body for every backend).
//
// x is (rows, C): every axis but the last folded into rows. Per row, with r = rsqrt(mean(x^2) + eps):
//   y = (x * r) * weight
// Backward (g = dy * weight; means over the row's C values):
//   dx = r * g - x * r^3 * mean(x * g);   dweight = sum over rows of dy * (x * r)
//
// One logical thread per row splits it into chunks of W neighbouring channels: chunk j holds
// channels [j W, j W + W), the thread of lane `lane` out of `lanes` takes chunks lane, lane + lanes,
// ...; a last partial chunk (C % W channels) goes to lane 0. Each thread sums its chunks lane-wise
// (W running sums, so the CPU loops stay elementwise and vectorise), folds the W sums (hsum) and
// R::sum adds the threads' sums: the CPU runs one thread per row (lanes = 1, W = kRmsWidth, R the
// identity), Metal one SIMD group per row (lanes = 32, W = 1, R = simd_sum). Then the same chunks
// are written. The backward also adds dy * (x * r) into its block's dweight partial, (n_blocks, C):
// a block of kRmsRows rows is one work item, its rows in order, each thread touching only its own
// channels; a second pass folds the partials per channel in block order. No atomics: results do not
// depend on the thread count.
#pragma once

#include "kernels/defines.h"
#include "kernels/row_blocks.h"
#include "kernels/rms_norm_params.h"
#include "kernels/vec.h"

namespace dfk {

// R for one thread per row: its sum is the row's.
template <typename T>
struct RmsOneThread {
  static DF_INLINE T sum(T v) { return v; }
};

DF_INLINE int rms_block_end(RmsParams p, int blk) { return row_block_end(p.rows, blk, (int)kRmsRows); }

// r = rsqrt(sum(x^2) / C + eps) of one row; every thread of the row gets it.
template <typename T, int W, class R>
DF_INLINE T rms_row_scale(int C, int lane, int lanes, const DF_DEVICE T* xr, T eps) {
  T s[W];
  for (int l = 0; l < W; ++l) s[l] = T(0);
  const int full = C / W;
  for (int j = lane; j < full; j += lanes) {
    const DF_DEVICE T* xc = xr + (long)j * W;
    for (int l = 0; l < W; ++l) s[l] += xc[l] * xc[l];
  }
  if (lane == 0) {
    const DF_DEVICE T* xc = xr + (long)full * W;
    for (int l = 0; l < C - full * W; ++l) s[l] += xc[l] * xc[l];
  }
  const T ss = R::sum(hsum<T, W>(s));
  return inv_sqrt(ss / T(C) + eps);
}

// ---- forward ---------------------------------------------------------------------------------------
// y for one row.
template <typename T, int W, class R>
DF_INLINE void rms_forward_row(RmsParams p, int row, int lane, int lanes, const DF_DEVICE T* x,
                               const DF_DEVICE T* weight, T eps, DF_DEVICE T* y) {
  const int C = p.channels;
  const DF_DEVICE T* xr = x + (long)row * C;
  DF_DEVICE T* yr = y + (long)row * C;
  const T r = rms_row_scale<T, W, R>(C, lane, lanes, xr, eps);
  const int full = C / W;
  for (int j = lane; j < full; j += lanes) {
    const int c0 = j * W;
    for (int l = 0; l < W; ++l) yr[c0 + l] = (xr[c0 + l] * r) * weight[c0 + l];
  }
  if (lane == 0) {
    for (int c = full * W; c < C; ++c) yr[c] = (xr[c] * r) * weight[c];
  }
}

// ---- backward --------------------------------------------------------------------------------------
// dx of one row, and dy * (x * r) added into the block's partial `pb` (C,).
template <typename T, int W, class R>
DF_INLINE void rms_backward_row(RmsParams p, int row, int lane, int lanes, const DF_DEVICE T* x,
                                const DF_DEVICE T* weight, const DF_DEVICE T* dy, T eps, DF_DEVICE T* dx,
                                DF_DEVICE T* pb) {
  const int C = p.channels;
  const long at = (long)row * C;
  const DF_DEVICE T* xr = x + at;
  const DF_DEVICE T* dyr = dy + at;
  DF_DEVICE T* dxr = dx + at;
  T s2[W], sg[W];
  for (int l = 0; l < W; ++l) s2[l] = sg[l] = T(0);
  const int full = C / W;
  for (int j = lane; j < full; j += lanes) {
    const int c0 = j * W;
    for (int l = 0; l < W; ++l) {
      const T xv = xr[c0 + l];
      s2[l] += xv * xv;
      sg[l] += xv * (dyr[c0 + l] * weight[c0 + l]);
    }
  }
  if (lane == 0) {
    const int c0 = full * W;
    for (int l = 0; l < C - c0; ++l) {
      const T xv = xr[c0 + l];
      s2[l] += xv * xv;
      sg[l] += xv * (dyr[c0 + l] * weight[c0 + l]);
    }
  }
  const T inv_c = T(1) / T(C);
  const T ss = R::sum(hsum<T, W>(s2));
  const T sxg = R::sum(hsum<T, W>(sg));
  const T r = inv_sqrt(ss * inv_c + eps);
  const T k = r * r * r * (sxg * inv_c);
  for (int j = lane; j < full; j += lanes) {
    const int c0 = j * W;
    for (int l = 0; l < W; ++l) {
      const int c = c0 + l;
      const T xv = xr[c], d = dyr[c];
      dxr[c] = r * (d * weight[c]) - xv * k;
      pb[c] += d * (xv * r);
    }
  }
  if (lane == 0) {
    for (int c = full * W; c < C; ++c) {
      const T xv = xr[c], d = dyr[c];
      dxr[c] = r * (d * weight[c]) - xv * k;
      pb[c] += d * (xv * r);
    }
  }
}

// Block blk of rows: its partial zeroed (the thread's own channels), then each row in order.
template <typename T, int W, class R>
DF_INLINE void rms_backward_block(RmsParams p, int blk, int lane, int lanes, const DF_DEVICE T* x,
                                  const DF_DEVICE T* weight, const DF_DEVICE T* dy, T eps, DF_DEVICE T* dx,
                                  DF_DEVICE T* part) {
  const int C = p.channels;
  DF_DEVICE T* pb = part + (long)blk * C;
  const int full = C / W;
  for (int j = lane; j < full; j += lanes) {
    for (int l = 0; l < W; ++l) pb[j * W + l] = T(0);
  }
  if (lane == 0) {
    for (int c = full * W; c < C; ++c) pb[c] = T(0);
  }
  const int r1 = rms_block_end(p, blk);
  for (int row = blk * (int)kRmsRows; row < r1; ++row) {
    rms_backward_row<T, W, R>(p, row, lane, lanes, x, weight, dy, eps, dx, pb);
  }
}

// Channel c: the blocks' partials folded in block order -> dweight[c] (0 when there are no rows);
// the Metal fold (the CPU runs fold_cpu.h's, the same sums in the same order).
template <typename T>
DF_INLINE void rms_dweight_fold(RmsParams p, int c, const DF_DEVICE T* part, DF_DEVICE T* dweight) {
  T s = T(0);
  for (int blk = 0; blk < p.n_blocks; ++blk) s += part[(long)blk * p.channels + c];
  dweight[c] = s;
}

}  // namespace dfk
