// Causal conv backward body (causal_conv_common.h has the equations): one work item recomputes g
// for its chunk (and K-1 steps of the next), writes its rows of dx (and dwindow), and its slot of
// the dweight / dbias partials; a second pass folds the partials in order.
#pragma once

#include "kernels/causal_conv_common.h"

namespace dfk {

// ---- backward -------------------------------------------------------------------------------------
// Writes dx rows [t0, t1) (chunk 0 also dwindow) for the span, and the chunk's partial sums
// dw_part[q, j, c], db_part[q, c] with q = b * n_chunks + chunk (db_part only with a bias).
template <typename T, int K, int W, int NF>
DF_INLINE void conv_backward_item(
    ConvParams p, int b, int chunk, int c0, int n_, const DF_DEVICE T* DF_RESTRICT x,
    const DF_DEVICE T* DF_RESTRICT window, const DF_DEVICE T* DF_RESTRICT weight,
    const DF_DEVICE T* DF_RESTRICT bias, const DF_DEVICE T* DF_RESTRICT dy,
    const DF_DEVICE T* DF_RESTRICT dnew_window, DF_DEVICE T* DF_RESTRICT dx,
    DF_DEVICE T* DF_RESTRICT dwindow, DF_DEVICE T* DF_RESTRICT dw_part,
    DF_DEVICE T* DF_RESTRICT db_part) {
  const int n = NF > 0 ? NF : n_;  // channels in the span
  T w[K * W], bb[W], acc[W];
  T hist[K * W];  // g at steps s, s-1, ..., s-K+1 (zero before step 0 and from T on)
  T sw[K * W], sb[W];  // this chunk's sums of g * xp[t + j] and of g
  conv_load_params<T, K, W, NF>(p, c0, n, weight, bias, w, bb);
  for (int e = 0; e < K * W; ++e) hist[e] = sw[e] = T(0);
  for (int l = 0; l < W; ++l) sb[l] = T(0);
  const bool silu = (p.flags & kConvSilu) != 0;
  const int L = p.length, C = p.channels, t0 = chunk * (int)kConvChunk, t1 = conv_chunk_end(p, chunk);
  // dxp[s] needs g[s-K+1 .. s]: chunk 0 emits from xp row 0 (dwindow), later chunks from their
  // first x row (xp row t0 + K-1), after K-1 steps of warm-up.
  const int emit_from = chunk == 0 ? 0 : t0 + K - 1;
  for (int s = t0; s < t1 + K - 1; ++s) {
    // Shift the history by one step (compile-time indices: registers on the GPU, vector moves on
    // the CPU), then hist[0] = g[s].
    for (int j = K - 1; j > 0; --j) {
      for (int l = 0; l < n; ++l) hist[j * W + l] = hist[(j - 1) * W + l];
    }
    DF_THREAD T* g = hist;
    conv_prefetch_row<T>(x, p, b, s + kConvPrefetch, c0, n);
    conv_prefetch_row<T>(dy, p, b, s + kConvPrefetch, c0, n);
    if (s < L) {
      const DF_DEVICE T* dyr = dy + ((long)b * L + s) * C + c0;
      if (silu) {
        conv_preact<T, K, W, NF>(p, b, s, c0, n, x, window, w, bb, acc);
        for (int l = 0; l < n; ++l) {
          const T a = acc[l], sg = fastmath::sigmoid(a);
          g[l] = dyr[l] * (sg * (T(1) + a * (T(1) - sg)));
        }
      } else {
        for (int l = 0; l < n; ++l) g[l] = dyr[l];
      }
      if (s < t1) {
        for (int l = 0; l < n; ++l) sb[l] += g[l];
        if (s >= K - 1) {  // as in conv_preact: every tap reads x
          const DF_DEVICE T* r = x + ((long)b * L + (s - (K - 1))) * C + c0;
          for (int j = 0; j < K; ++j) {
            DF_THREAD T* swj = sw + j * W;
            for (int l = 0; l < n; ++l) swj[l] += g[l] * r[(long)j * C + l];
          }
        } else {
          for (int j = 0; j < K; ++j) {
            const DF_DEVICE T* r = conv_xp_row(p, x, window, b, s + j, c0);
            DF_THREAD T* swj = sw + j * W;
            if (r) {
              for (int l = 0; l < n; ++l) swj[l] += g[l] * r[l];
            } else {
              for (int l = 0; l < n; ++l) swj[l] += g[l] * T(0);
            }
          }
        }
      }
    } else {
      for (int l = 0; l < n; ++l) g[l] = T(0);
    }
    if (s < emit_from) continue;
    for (int l = 0; l < n; ++l) acc[l] = T(0);
    for (int j = 0; j < K; ++j) {
      const DF_THREAD T* gj = hist + j * W;  // g[s - j]
      const DF_THREAD T* wj = w + j * W;
      for (int l = 0; l < n; ++l) acc[l] += wj[l] * gj[l];
    }
    if (s >= L) {  // xp row s is row s - T of the new window
      const DF_DEVICE T* dn = dnew_window + ((long)b * (K - 1) + (s - L)) * C + c0;
      for (int l = 0; l < n; ++l) acc[l] += dn[l];
    }
    DF_DEVICE T* out = nullptr;
    if (s >= K - 1) {
      out = dx + ((long)b * L + (s - (K - 1))) * C + c0;
    } else if (p.flags & kConvHasWindow) {
      out = dwindow + ((long)b * (K - 1) + s) * C + c0;
    }
    if (out) {
      for (int l = 0; l < n; ++l) out[l] = acc[l];
    }
  }
  const long q = (long)b * p.n_chunks + chunk;
  for (int j = 0; j < K; ++j) {
    DF_DEVICE T* dst = dw_part + (q * K + j) * C + c0;
    for (int l = 0; l < n; ++l) dst[l] = sw[j * W + l];
  }
  if (p.flags & kConvHasBias) {
    for (int l = 0; l < n; ++l) db_part[q * C + c0 + l] = sb[l];
  }
}

// dst[j] = sum over k < count of src[k * inner + j], k in order, for j in [j0, j0 + n): folds the
// partials of dweight (inner = K * C) and dbias (inner = C) over (batch, chunk). The GPU runs one j
// per thread (n = 1), the CPU spans of W contiguous j.
template <typename T, int W>
DF_INLINE void conv_sum_partials(const DF_DEVICE T* DF_RESTRICT src, DF_DEVICE T* DF_RESTRICT dst,
                                 int count, long inner, long j0, int n) {
  T s[W];
  for (int l = 0; l < n; ++l) s[l] = T(0);
  for (int k = 0; k < count; ++k) {
    const DF_DEVICE T* row = src + (long)k * inner + j0;
    for (int l = 0; l < n; ++l) s[l] += row[l];
  }
  for (int l = 0; l < n; ++l) dst[j0 + l] = s[l];
}

}  // namespace dfk
