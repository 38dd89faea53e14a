// Causal conv forward body (causal_conv_common.h has the equations): one work item writes y for
// its chunk and span of channels, and the last chunk the span's new window.
#pragma once

#include "kernels/causal_conv_common.h"

namespace dfk {

// ---- forward --------------------------------------------------------------------------------------
// y[b, t, c0 + l] for t in the chunk; the last chunk also writes the span's new window.
template <typename T, int K, int W, int NF>
DF_INLINE void conv_forward_item(ConvParams p, int b, int chunk, int c0, int n_,
                                 const DF_DEVICE T* DF_RESTRICT x,
                                 const DF_DEVICE T* DF_RESTRICT window,
                                 const DF_DEVICE T* DF_RESTRICT weight,
                                 const DF_DEVICE T* DF_RESTRICT bias, DF_DEVICE T* DF_RESTRICT y,
                                 DF_DEVICE T* DF_RESTRICT new_window) {
  const int n = NF > 0 ? NF : n_;  // channels in the span
  T w[K * W], bb[W], acc[W];
  conv_load_params<T, K, W, NF>(p, c0, n, weight, bias, w, bb);
  const bool silu = (p.flags & kConvSilu) != 0;
  const int t1 = conv_chunk_end(p, chunk);
  for (int t = chunk * (int)kConvChunk; t < t1; ++t) {
    conv_prefetch_row<T>(x, p, b, t + kConvPrefetch, c0, n);
    conv_preact<T, K, W, NF>(p, b, t, c0, n, x, window, w, bb, acc);
    DF_DEVICE T* yr = y + ((long)b * p.length + t) * p.channels + c0;
    if (silu) {
      for (int l = 0; l < n; ++l) yr[l] = acc[l] * fastmath::sigmoid(acc[l]);
    } else {
      for (int l = 0; l < n; ++l) yr[l] = acc[l];
    }
  }
  if (chunk == p.n_chunks - 1) {
    for (int r = 0; r < K - 1; ++r) {  // xp rows T .. T+K-2
      const DF_DEVICE T* src = conv_xp_row(p, x, window, b, p.length + r, c0);
      DF_DEVICE T* dst = new_window + ((long)b * (K - 1) + r) * p.channels + c0;
      for (int l = 0; l < n; ++l) dst[l] = src ? src[l] : T(0);
    }
  }
}

}  // namespace dfk
