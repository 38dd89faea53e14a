// Training-mode batch normalisation (+ ReLU) kernel bodies, channels-last, written once for the CPU
// primitive and the Metal kernels (one body for every backend).
//
// x is (rows, C): every axis but the channels folded into rows. Forward:
//   mean[c] = mean over rows of x[., c];  var[c] = mean of (x - mean)^2 (biased)
//   y = (x - mean) * weight * rsqrt(var + eps) + bias;  y = max(y, 0) with kBnRelu
// Backward (g = dy, zeroed where the ReLU cut, recomputed from x; n = rows, inv = rsqrt(var + eps)):
//   dbias = sum g;  dweight = inv * sum g * (x - mean)
//   dx = g * k1 - (x - mean) * k2 + k3,  k1 = weight * inv,
//        k2 = k1 * inv * dweight / n - 2 * dvar / n,  k3 = (dmean - k1 * dbias) / n
// (dmean, dvar: the cotangents of the mean and var outputs; zero when only y is used.)
//
// Three passes each way, every one a loop the drivers run over a grid: (1) per block of kBnRows
// rows, block sums -> partials (block, C); (2) per channel, the partials folded in block order ->
// the statistics (forward: Chan et al.'s pairwise merge of block means and centred sums, so no
// sum-of-squares cancellation); (3) per block, the elementwise result. A work item of passes 1 and
// 3 is (block, span of n channels from c0): the CPU runs spans of up to kBnSpan contiguous channels
// (vectorised inner loops), the GPU one channel per thread. Results do not depend on the thread count.
#pragma once

#include "kernels/batch_norm_params.h"
#include "kernels/defines.h"
#include "kernels/row_blocks.h"

namespace dfk {

DF_INLINE int bn_block_end(BnParams p, int blk) { return row_block_end(p.rows, blk, (int)kBnRows); }

// ---- forward ---------------------------------------------------------------------------------------
// Pass 1: the block's mean and centred sum of squares, m2 = sum (x - block mean)^2, per channel.
// Two sweeps over the block's rows (the second hits the cache on the CPU).
template <typename T, int W, int NF>
DF_INLINE void bn_stats_item(BnParams p, int blk, int c0, int n_, const DF_DEVICE T* x,
                             DF_DEVICE T* part_mean, DF_DEVICE T* part_m2) {
  const int n = NF > 0 ? NF : n_;
  const int r0 = blk * (int)kBnRows, r1 = bn_block_end(p, blk);
  T s[W], m[W];
  for (int l = 0; l < n; ++l) s[l] = T(0);
  for (int r = r0; r < r1; ++r) {
    const DF_DEVICE T* row = x + (long)r * p.channels + c0;
    for (int l = 0; l < n; ++l) s[l] += row[l];
  }
  const T inv_count = T(1) / T(r1 - r0);
  for (int l = 0; l < n; ++l) {
    m[l] = s[l] * inv_count;
    s[l] = T(0);
  }
  for (int r = r0; r < r1; ++r) {
    const DF_DEVICE T* row = x + (long)r * p.channels + c0;
    for (int l = 0; l < n; ++l) {
      const T d = row[l] - m[l];
      s[l] += d * d;
    }
  }
  const long at = (long)blk * p.channels + c0;
  for (int l = 0; l < n; ++l) {
    part_mean[at + l] = m[l];
    part_m2[at + l] = s[l];
  }
}

// Pass 2, channel c: the blocks' (count, mean, m2) merged in block order -> mean[c], var[c] (biased).
template <typename T>
DF_INLINE void bn_stats_combine(BnParams p, int c, const DF_DEVICE T* part_mean, const DF_DEVICE T* part_m2,
                                DF_DEVICE T* mean, DF_DEVICE T* var) {
  T count = T(0), mu = T(0), m2 = T(0);
  for (int blk = 0; blk < p.n_blocks; ++blk) {
    const T nb = T(bn_block_end(p, blk) - blk * (int)kBnRows);
    const T mb = part_mean[(long)blk * p.channels + c];
    const T total = count + nb;
    const T delta = mb - mu;
    mu += delta * (nb / total);
    m2 += part_m2[(long)blk * p.channels + c] + delta * delta * (count * nb / total);
    count = total;
  }
  mean[c] = mu;
  var[c] = m2 / count;
}

// The span's per-channel constants: scale = weight * rsqrt(var + eps), the mean, the bias.
template <typename T, int W, int NF>
DF_INLINE void bn_load_affine(int c0, int n_, const DF_DEVICE T* weight, const DF_DEVICE T* bias,
                              const DF_DEVICE T* mean, const DF_DEVICE T* var, T eps, DF_THREAD T* scale,
                              DF_THREAD T* mu, DF_THREAD T* b) {
  const int n = NF > 0 ? NF : n_;
  for (int l = 0; l < n; ++l) {
    scale[l] = weight[c0 + l] * inv_sqrt(var[c0 + l] + eps);
    mu[l] = mean[c0 + l];
    b[l] = bias[c0 + l];
  }
}

// Pass 3: y for the block's rows.
template <typename T, int W, int NF>
DF_INLINE void bn_apply_item(BnParams p, int blk, int c0, int n_, const DF_DEVICE T* x,
                             const DF_DEVICE T* weight, const DF_DEVICE T* bias, const DF_DEVICE T* mean,
                             const DF_DEVICE T* var, T eps, DF_DEVICE T* y) {
  const int n = NF > 0 ? NF : n_;
  T scale[W], mu[W], b[W];
  bn_load_affine<T, W, NF>(c0, n, weight, bias, mean, var, eps, scale, mu, b);
  const bool relu = (p.flags & kBnRelu) != 0;
  const int r0 = blk * (int)kBnRows, r1 = bn_block_end(p, blk);
  for (int r = r0; r < r1; ++r) {
    const DF_DEVICE T* xr = x + (long)r * p.channels + c0;
    DF_DEVICE T* yr = y + (long)r * p.channels + c0;
    if (relu) {
      for (int l = 0; l < n; ++l) {
        const T v = (xr[l] - mu[l]) * scale[l] + b[l];
        yr[l] = v > T(0) ? v : T(0);
      }
    } else {
      for (int l = 0; l < n; ++l) yr[l] = (xr[l] - mu[l]) * scale[l] + b[l];
    }
  }
}

// ---- backward --------------------------------------------------------------------------------------
// Pass 1: the block's sums of g and of g * (x - mean), per channel.
template <typename T, int W, int NF>
DF_INLINE void bn_grad_stats_item(BnParams p, int blk, int c0, int n_, const DF_DEVICE T* x,
                                  const DF_DEVICE T* weight, const DF_DEVICE T* bias,
                                  const DF_DEVICE T* mean, const DF_DEVICE T* var, T eps,
                                  const DF_DEVICE T* dy, DF_DEVICE T* part_g, DF_DEVICE T* part_gx) {
  const int n = NF > 0 ? NF : n_;
  T scale[W], mu[W], b[W], sg[W], sgx[W];
  bn_load_affine<T, W, NF>(c0, n, weight, bias, mean, var, eps, scale, mu, b);
  for (int l = 0; l < n; ++l) sg[l] = sgx[l] = T(0);
  const bool relu = (p.flags & kBnRelu) != 0;
  const int r0 = blk * (int)kBnRows, r1 = bn_block_end(p, blk);
  for (int r = r0; r < r1; ++r) {
    const DF_DEVICE T* xr = x + (long)r * p.channels + c0;
    const DF_DEVICE T* dyr = dy + (long)r * p.channels + c0;
    for (int l = 0; l < n; ++l) {
      const T xc = xr[l] - mu[l];
      // the ReLU's mask from the same expression the forward rounded
      const T g = (!relu || xc * scale[l] + b[l] > T(0)) ? dyr[l] : T(0);
      sg[l] += g;
      sgx[l] += g * xc;
    }
  }
  const long at = (long)blk * p.channels + c0;
  for (int l = 0; l < n; ++l) {
    part_g[at + l] = sg[l];
    part_gx[at + l] = sgx[l];
  }
}

// Pass 2, channel c: the partials folded in block order -> dweight[c], dbias[c].
template <typename T>
DF_INLINE void bn_grad_combine(BnParams p, int c, const DF_DEVICE T* part_g, const DF_DEVICE T* part_gx,
                               const DF_DEVICE T* var, T eps, DF_DEVICE T* dweight, DF_DEVICE T* dbias) {
  T sg = T(0), sgx = T(0);
  for (int blk = 0; blk < p.n_blocks; ++blk) {
    sg += part_g[(long)blk * p.channels + c];
    sgx += part_gx[(long)blk * p.channels + c];
  }
  dbias[c] = sg;
  dweight[c] = sgx * inv_sqrt(var[c] + eps);
}

// Pass 3: dx for the block's rows.
template <typename T, int W, int NF>
DF_INLINE void bn_grad_apply_item(BnParams p, int blk, int c0, int n_, const DF_DEVICE T* x,
                                  const DF_DEVICE T* weight, const DF_DEVICE T* bias,
                                  const DF_DEVICE T* mean, const DF_DEVICE T* var, T eps,
                                  const DF_DEVICE T* dy, const DF_DEVICE T* dmean,
                                  const DF_DEVICE T* dvar, const DF_DEVICE T* dweight,
                                  const DF_DEVICE T* dbias, DF_DEVICE T* dx) {
  const int n = NF > 0 ? NF : n_;
  T scale[W], mu[W], b[W], k2[W], k3[W];
  bn_load_affine<T, W, NF>(c0, n, weight, bias, mean, var, eps, scale, mu, b);  // scale = k1
  const T inv_n = T(1) / T(p.rows);
  for (int l = 0; l < n; ++l) {
    const int c = c0 + l;
    const T inv = inv_sqrt(var[c] + eps);
    k2[l] = scale[l] * inv * dweight[c] * inv_n - T(2) * dvar[c] * inv_n;
    k3[l] = (dmean[c] - scale[l] * dbias[c]) * inv_n;
  }
  const bool relu = (p.flags & kBnRelu) != 0;
  const int r0 = blk * (int)kBnRows, r1 = bn_block_end(p, blk);
  for (int r = r0; r < r1; ++r) {
    const DF_DEVICE T* xr = x + (long)r * p.channels + c0;
    const DF_DEVICE T* dyr = dy + (long)r * p.channels + c0;
    DF_DEVICE T* dxr = dx + (long)r * p.channels + c0;
    for (int l = 0; l < n; ++l) {
      const T xc = xr[l] - mu[l];
      const T g = (!relu || xc * scale[l] + b[l] > T(0)) ? dyr[l] : T(0);
      dxr[l] = g * scale[l] - xc * k2[l] + k3[l];
    }
  }
}

}  // namespace dfk
