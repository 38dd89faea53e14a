// Causal depthwise conv1d (+ SiLU) kernel bodies (mamba-ssm's causal_conv1d, channels-last), written
// once for the CPU primitive and the Metal kernels (docs/architecture.md).
//
//   xp = [window; x] along time (window: the K-1 inputs before x, zeros when absent)
//   pre[b,t,c] = bias[c] + sum_j weight[j,c] * xp[b,t+j,c];   y = silu(pre) (or pre)
//   new_window = the last K-1 rows of xp
//
// One work item is (batch, chunk of kConvChunk time steps, span of `n` channels starting at c0).
// The CPU runs spans of up to kConvBlock channels (the inner loops over the span are contiguous and
// vectorise), the GPU one channel per thread (n = 1). Only the per-item loops are shared; the
// drivers decide the spans. Template arguments: K taps, W the span arrays' size, NF > 0 when the
// span has exactly NF channels known at compile time (the CPU's full blocks: the loops unroll
// completely and the sums stay in vector registers), NF = 0 for a run-time count n <= W.
//
// Backward, with g = dy * silu'(pre) recomputed from x (nothing is saved by the forward):
//   dxp[i] = sum_j weight[j] * g[i-j] (+ dnew_window[i-T] for i >= T);  dx = dxp[K-1:], dwindow = dxp[:K-1]
//   dweight[j] = sum_{b,t} g[b,t] * xp[b,t+j],  dbias = sum_{b,t} g[b,t]
// An item walks its chunk once, forwards in time, keeping the last K values of g, and
// runs K-1 steps into the next chunk (recomputing its g) to finish its own dxp rows. Its sums over
// time go to its own slot of the partials (batch * n_chunks, ...), which a second pass folds in a
// fixed order: results do not depend on how items are spread over threads.
//
// This header: what the forward (causal_conv_fwd.h) and the backward (causal_conv_bwd.h) share.
// Parameters and flags: causal_conv_params.h.
#pragma once

#include "kernels/causal_conv_params.h"
#include "kernels/defines.h"
#include "kernels/fast_math.h"

namespace dfk {

// Row i of xp for batch b, offset to channel c0; null for a row of the absent (zero) window.
template <typename T>
DF_INLINE const DF_DEVICE T* conv_xp_row(ConvParams p, const DF_DEVICE T* x, const DF_DEVICE T* window,
                                         int b, int i, int c0) {
  const int k1 = p.width - 1;
  if (i >= k1) return x + ((long)b * p.length + (i - k1)) * p.channels + c0;
  if (p.flags & kConvHasWindow) return window + ((long)b * k1 + i) * p.channels + c0;
  return nullptr;
}

// acc[l] = bias + sum_j w[j][l] * xp[t + j][l] for the n channels of the span, j ascending. Each
// loop over l reads one contiguous row and local arrays only, so it vectorises without alias checks.
// A zero row still multiplies (w * 0), so a NaN/inf weight poisons the result as in the reference.
template <typename T, int K, int W, int NF>
DF_INLINE void conv_preact(ConvParams p, int b, int t, int c0, int n_, const DF_DEVICE T* x,
                           const DF_DEVICE T* window, const DF_THREAD T* w, const DF_THREAD T* bb,
                           DF_THREAD T* acc) {
  const int n = NF > 0 ? NF : n_;  // channels in the span
  for (int l = 0; l < n; ++l) acc[l] = bb[l];
  if (t >= K - 1) {  // every tap reads x (all but the first K-1 steps): straight-line code
    const DF_DEVICE T* r = x + ((long)b * p.length + (t - (K - 1))) * p.channels + c0;
    for (int j = 0; j < K; ++j) {
      const DF_THREAD T* wj = w + j * W;
      for (int l = 0; l < n; ++l) acc[l] += wj[l] * r[(long)j * p.channels + l];
    }
    return;
  }
  for (int j = 0; j < K; ++j) {
    const DF_DEVICE T* r = conv_xp_row(p, x, window, b, t + j, c0);
    const DF_THREAD T* wj = w + j * W;
    if (r) {
      for (int l = 0; l < n; ++l) acc[l] += wj[l] * r[l];
    } else {
      for (int l = 0; l < n; ++l) acc[l] += wj[l] * T(0);
    }
  }
}

// CPU only (a no-op on Metal): asks for row `row` of a (batch, time, channels) array at the span's
// channels before it is needed. One item's rows are C floats apart; without this the loops spent
// half their time waiting for each new row of x (measured with perf).
template <typename T>
DF_INLINE void conv_prefetch_row(const DF_DEVICE T* a, ConvParams p, int b, int row, int c0, int n) {
  if (row >= p.length) return;
  const DF_DEVICE T* r = a + ((long)b * p.length + row) * p.channels + c0;
  for (int l = 0; l < n; l += 64 / (int)sizeof(T)) DF_PREFETCH(r + l);
}

// Time steps [t0, t1) of chunk `chunk`.
DF_INLINE int conv_chunk_end(ConvParams p, int chunk) {
  const int t1 = (chunk + 1) * (int)kConvChunk;
  return t1 < p.length ? t1 : p.length;
}

// The span's weights (w[j * W + l]) and bias.
template <typename T, int K, int W, int NF>
DF_INLINE void conv_load_params(ConvParams p, int c0, int n_, const DF_DEVICE T* weight,
                                const DF_DEVICE T* bias, DF_THREAD T* w, DF_THREAD T* bb) {
  const int n = NF > 0 ? NF : n_;  // channels in the span
  for (int j = 0; j < K; ++j) {
    for (int l = 0; l < n; ++l) w[j * W + l] = weight[(long)j * p.channels + c0 + l];
  }
  const bool has_bias = (p.flags & kConvHasBias) != 0;
  for (int l = 0; l < n; ++l) bb[l] = has_bias ? bias[c0 + l] : T(0);
}

}  // namespace dfk
