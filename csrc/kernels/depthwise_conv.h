// Depthwise 1-D convolution along the frequency axis of channels-last arrays, and its transpose:
// kernel bodies written once for the CPU primitive and the Metal kernels. Parameters:
// depthwise_conv_params.h.
//
// A row is one (batch, time) position: `big` frequencies x C channels on one side, `small` on the
// other, with small = (big + 2 pad - K) / stride + 1. Two linear maps, adjoint to each other:
//   gather  (big -> small):  out[m, c] = sum_j w[j, c] * in[stride * m + j - pad, c]
//   scatter (small -> big):  out[f, c] = sum over (m, j) with stride * m + j - pad = f of w[j, c] * in[m, c]
// (zero outside [0, big)). A strided depthwise conv is `gather`; DeepFilterNet's depthwise
// ConvTranspose2d (1, K) is `scatter` (PyTorch's transposed-conv indexing, output_padding giving
// `big` = stride * small). Each one's input gradient is the other; the weight gradient of both is
//   dw[j, c] = sum over rows and m of small_side[m, c] * big_side[stride * m + j - pad, c].
//
// Work item: (block of kDwRows rows, span of n channels from c0); the CPU runs spans of up to
// kDwSpan contiguous channels (vectorised inner loops), the GPU one channel per thread. The weight
// gradient goes through per-block partials folded in block order (conv_sum_partials: results do
// not depend on the thread count).
#pragma once

#include "kernels/causal_conv_bwd.h"  // conv_sum_partials: the same fold of per-item partials
#include "kernels/defines.h"
#include "kernels/depthwise_conv_params.h"

namespace dfk {

DF_INLINE int dw_block_end(DwParams p, int blk) {
  const int r1 = (blk + 1) * (int)kDwRows;
  return r1 < p.rows ? r1 : p.rows;
}

// The span's weights w[j * W + l].
template <typename T, int W, int NF>
DF_INLINE void dw_load_weight(DwParams p, int c0, int n_, const DF_DEVICE T* weight, DF_THREAD T* w) {
  const int n = NF > 0 ? NF : n_;
  for (int j = 0; j < p.width; ++j) {
    for (int l = 0; l < n; ++l) w[j * W + l] = weight[(long)j * p.channels + c0 + l];
  }
}

// One of the two maps for the block's rows and the span: gather (SCATTER false: out (rows, small, C)
// from in (rows, big, C)) or scatter (true: out (rows, big, C) from in (rows, small, C)). Each output
// value is written once, as the sum over the taps j that reach it of w[j] times its input value.
template <typename T, int W, int NF, bool SCATTER>
DF_INLINE void dw_map_item(DwParams p, int blk, int c0, int n_, const DF_DEVICE T* in, const DF_DEVICE T* weight,
                           DF_DEVICE T* out) {
  const int n = NF > 0 ? NF : n_;
  T w[kDwMaxWidth * W], acc[W];
  dw_load_weight<T, W, NF>(p, c0, n, weight, w);
  const long C = p.channels;
  const int n_in = SCATTER ? p.small : p.big, n_out = SCATTER ? p.big : p.small;
  for (int r = blk * (int)kDwRows; r < dw_block_end(p, blk); ++r) {
    const DF_DEVICE T* row = in + (long)r * n_in * C + c0;
    DF_DEVICE T* dst = out + (long)r * n_out * C + c0;
    for (int o = 0; o < n_out; ++o) {
      for (int l = 0; l < n; ++l) acc[l] = T(0);
      for (int j = 0; j < p.width; ++j) {
        int i = p.stride * o + j - p.pad;  // gather: input frequency of tap j
        if (SCATTER) {                     // scatter: the m with stride * m + j - pad = o
          const int q = o + p.pad - j;
          i = (q < 0 || q % p.stride != 0) ? -1 : q / p.stride;
        }
        if (i < 0 || i >= n_in) continue;
        const DF_DEVICE T* src = row + (long)i * C;
        const DF_THREAD T* wj = w + j * W;
        for (int l = 0; l < n; ++l) acc[l] += wj[l] * src[l];
      }
      for (int l = 0; l < n; ++l) dst[(long)o * C + l] = acc[l];
    }
  }
}

template <typename T, int W, int NF>
DF_INLINE void dw_gather_item(DwParams p, int blk, int c0, int n, const DF_DEVICE T* in,
                              const DF_DEVICE T* weight, DF_DEVICE T* out) {
  dw_map_item<T, W, NF, false>(p, blk, c0, n, in, weight, out);
}

template <typename T, int W, int NF>
DF_INLINE void dw_scatter_item(DwParams p, int blk, int c0, int n, const DF_DEVICE T* in,
                               const DF_DEVICE T* weight, DF_DEVICE T* out) {
  dw_map_item<T, W, NF, true>(p, blk, c0, n, in, weight, out);
}

// Weight-gradient partials of the block: part[blk, j, c] = sum over its rows and m of
// small_side[m, c] * big_side[stride * m + j - pad, c].
template <typename T, int W, int NF>
DF_INLINE void dw_weight_grad_item(DwParams p, int blk, int c0, int n_, const DF_DEVICE T* big_side,
                                   const DF_DEVICE T* small_side, DF_DEVICE T* part) {
  const int n = NF > 0 ? NF : n_;
  T s[kDwMaxWidth * W];
  for (int e = 0; e < p.width * W; ++e) s[e] = T(0);
  const long C = p.channels;
  for (int r = blk * (int)kDwRows; r < dw_block_end(p, blk); ++r) {
    const DF_DEVICE T* brow = big_side + (long)r * p.big * C + c0;
    const DF_DEVICE T* srow = small_side + (long)r * p.small * C + c0;
    for (int m = 0; m < p.small; ++m) {
      const DF_DEVICE T* g = srow + (long)m * C;
      for (int j = 0; j < p.width; ++j) {
        const int f = p.stride * m + j - p.pad;
        if (f < 0 || f >= p.big) continue;
        const DF_DEVICE T* x = brow + (long)f * C;
        DF_THREAD T* sj = s + j * W;
        for (int l = 0; l < n; ++l) sj[l] += g[l] * x[l];
      }
    }
  }
  for (int j = 0; j < p.width; ++j) {
    DF_DEVICE T* dst = part + ((long)blk * p.width + j) * C + c0;
    for (int l = 0; l < n; ++l) dst[l] = s[j * W + l];
  }
}

}  // namespace dfk
