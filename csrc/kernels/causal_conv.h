// Causal depthwise conv1d (+ SiLU) kernel bodies (mamba-ssm's causal_conv1d, channels-last), written
// once for the CPU primitive and the Metal kernels (DESIGN.md decision 1).
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
#pragma once

#include "kernels/defines.h"
#include "kernels/gate_math.h"

#if defined(__METAL_VERSION__)
#define DFK_CONV_INLINE inline
#define DFK_CONV_RESTRICT
#define DFK_CONV_PREFETCH(ptr)
#else
#define DFK_CONV_INLINE inline __attribute__((always_inline))
#define DFK_CONV_RESTRICT __restrict__
#define DFK_CONV_PREFETCH(ptr) __builtin_prefetch(ptr)
#endif

namespace dfk {

enum ConvConstants {
  kConvChunk = 64,    // time steps per work item (and per partial-sum slot)
  kConvBlock = 64,    // channels per CPU work item
  kConvMaxWidth = 8,  // largest K with a compiled kernel
  kConvPrefetch = 8,  // CPU: rows of x (and dy) requested this many steps ahead
};

enum ConvFlags {
  kConvHasWindow = 1,
  kConvHasBias = 2,
  kConvSilu = 4,
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only).
struct ConvParams {
  int batch;
  int length;    // T
  int channels;  // C
  int width;     // K (the bodies take it as a template argument too)
  int n_chunks;  // ceil(T / kConvChunk)
  int flags;
};

// Row i of xp for batch b, offset to channel c0; null for a row of the absent (zero) window.
template <typename T>
DFK_CONV_INLINE const DF_DEVICE T* conv_xp_row(ConvParams p, const DF_DEVICE T* x, const DF_DEVICE T* window,
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
DFK_CONV_INLINE void conv_preact(ConvParams p, int b, int t, int c0, int n_, const DF_DEVICE T* x,
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
DFK_CONV_INLINE void conv_prefetch_row(const DF_DEVICE T* a, ConvParams p, int b, int row, int c0, int n) {
  if (row >= p.length) return;
  const DF_DEVICE T* r = a + ((long)b * p.length + row) * p.channels + c0;
  for (int l = 0; l < n; l += 64 / (int)sizeof(T)) DFK_CONV_PREFETCH(r + l);
}

// Time steps [t0, t1) of chunk `chunk`.
DFK_CONV_INLINE int conv_chunk_end(ConvParams p, int chunk) {
  const int t1 = (chunk + 1) * (int)kConvChunk;
  return t1 < p.length ? t1 : p.length;
}

// The span's weights (w[j * W + l]) and bias.
template <typename T, int K, int W, int NF>
DFK_CONV_INLINE void conv_load_params(ConvParams p, int c0, int n_, const DF_DEVICE T* weight,
                                      const DF_DEVICE T* bias, DF_THREAD T* w, DF_THREAD T* bb) {
  const int n = NF > 0 ? NF : n_;  // channels in the span
  for (int j = 0; j < K; ++j) {
    for (int l = 0; l < n; ++l) w[j * W + l] = weight[(long)j * p.channels + c0 + l];
  }
  const bool has_bias = (p.flags & kConvHasBias) != 0;
  for (int l = 0; l < n; ++l) bb[l] = has_bias ? bias[c0 + l] : T(0);
}

// ---- forward --------------------------------------------------------------------------------------
// y[b, t, c0 + l] for t in the chunk; the last chunk also writes the span's new window.
template <typename T, int K, int W, int NF>
DFK_CONV_INLINE void conv_forward_item(ConvParams p, int b, int chunk, int c0, int n_,
                                       const DF_DEVICE T* DFK_CONV_RESTRICT x,
                                       const DF_DEVICE T* DFK_CONV_RESTRICT window,
                                       const DF_DEVICE T* DFK_CONV_RESTRICT weight,
                                       const DF_DEVICE T* DFK_CONV_RESTRICT bias, DF_DEVICE T* DFK_CONV_RESTRICT y,
                                       DF_DEVICE T* DFK_CONV_RESTRICT new_window) {
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
      for (int l = 0; l < n; ++l) yr[l] = acc[l] * gate_sigmoid(acc[l]);
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

// ---- backward -------------------------------------------------------------------------------------
// Writes dx rows [t0, t1) (chunk 0 also dwindow) for the span, and the chunk's partial sums
// dw_part[q, j, c], db_part[q, c] with q = b * n_chunks + chunk (db_part only with a bias).
template <typename T, int K, int W, int NF>
DFK_CONV_INLINE void conv_backward_item(
    ConvParams p, int b, int chunk, int c0, int n_, const DF_DEVICE T* DFK_CONV_RESTRICT x,
    const DF_DEVICE T* DFK_CONV_RESTRICT window, const DF_DEVICE T* DFK_CONV_RESTRICT weight,
    const DF_DEVICE T* DFK_CONV_RESTRICT bias, const DF_DEVICE T* DFK_CONV_RESTRICT dy,
    const DF_DEVICE T* DFK_CONV_RESTRICT dnew_window, DF_DEVICE T* DFK_CONV_RESTRICT dx,
    DF_DEVICE T* DFK_CONV_RESTRICT dwindow, DF_DEVICE T* DFK_CONV_RESTRICT dw_part,
    DF_DEVICE T* DFK_CONV_RESTRICT db_part) {
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
          const T a = acc[l], sg = gate_sigmoid(a);
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
DFK_CONV_INLINE void conv_sum_partials(const DF_DEVICE T* DFK_CONV_RESTRICT src, DF_DEVICE T* DFK_CONV_RESTRICT dst,
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
