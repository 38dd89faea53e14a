// CPU evaluation of the causal conv: the kernel bodies the Metal kernels call, over spans of
// kConvBlock channels (contiguous, vectorised inner loops) on our own threads.
// No code here reads floating-point exception flags; without this GCC may not turn the clamps of
// dfk::gate_exp into selects (a compare "might trap"), and the SiLU loops would not vectorise.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "causal_conv_cpu.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "causal_conv_width.h"
#include "parallel.h"

// As in selective_scan_cpu.cpp: on x86-64 Linux build the item loops for AVX-512, AVX2+FMA and the
// baseline and let the loader pick (GCC >= 11); elsewhere build them once.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define DFNET4_CONV_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DFNET4_CONV_CLONES
#endif

namespace dfnet4::conv_cpu {
namespace {

constexpr int W = dfk::kConvBlock;

// Work item e of the grid, batch-major, then chunk, then channel block.
struct Item {
  int b, chunk, c0, n;
};
Item item(const dfk::ConvParams& p, long e) {
  const int blocks = (p.channels + W - 1) / W;
  const int blk = static_cast<int>(e % blocks);
  const long bc = e / blocks;
  const int c0 = blk * W;
  return {static_cast<int>(bc / p.n_chunks), static_cast<int>(bc % p.n_chunks), c0,
          std::min(W, p.channels - c0)};
}
long items(const dfk::ConvParams& p) {
  return static_cast<long>(p.batch) * p.n_chunks * ((p.channels + W - 1) / W);
}

template <typename T, int K>
DFNET4_CONV_CLONES void forward_range(const dfk::ConvParams& p, const ForwardBuffers<T>& f, long begin,
                                      long end) {
  for (long e = begin; e < end; ++e) {
    const Item it = item(p, e);
    // Full blocks with a compile-time count: fully unrolled vector loops, sums kept in registers.
    if (it.n == W) {
      dfk::conv_forward_item<T, K, W, W>(p, it.b, it.chunk, it.c0, W, f.x, f.window, f.weight, f.bias, f.y,
                                         f.new_window);
    } else {
      dfk::conv_forward_item<T, K, W, 0>(p, it.b, it.chunk, it.c0, it.n, f.x, f.window, f.weight, f.bias,
                                         f.y, f.new_window);
    }
  }
}

template <typename T, int K>
DFNET4_CONV_CLONES void backward_range(const dfk::ConvParams& p, const BackwardBuffers<T>& g, long begin,
                                       long end) {
  for (long e = begin; e < end; ++e) {
    const Item it = item(p, e);
    if (it.n == W) {
      dfk::conv_backward_item<T, K, W, W>(p, it.b, it.chunk, it.c0, W, g.x, g.window, g.weight, g.bias, g.dy,
                                          g.dnew_window, g.dx, g.dwindow, g.dw_part, g.db_part);
    } else {
      dfk::conv_backward_item<T, K, W, 0>(p, it.b, it.chunk, it.c0, it.n, g.x, g.window, g.weight, g.bias,
                                          g.dy, g.dnew_window, g.dx, g.dwindow, g.dw_part, g.db_part);
    }
  }
}

// Items [0, n) handed out one at a time on demand, so a worker the OS delays (a busy machine) does
// not hold up the others as it would with one fixed slice per worker.
template <typename Fn>
void claim_for(long n, Fn&& fn) {
  std::atomic<long> next{0};
  parallel_for(std::min<long>(num_threads(), n), [&](long, long, int) {
    for (long e = next.fetch_add(1); e < n; e = next.fetch_add(1)) fn(e, e + 1);
  });
}

using conv_width::with_width;
static_assert(dfk::kConvMaxWidth == conv_width::kMaxWidth, "with_width covers every kernel width");

template <typename T>
DFNET4_CONV_CLONES void fold(const T* src, T* dst, int count, long inner) {
  for (long j0 = 0; j0 < inner; j0 += W) {
    dfk::conv_sum_partials<T, W>(src, dst, count, inner, j0, static_cast<int>(std::min<long>(W, inner - j0)));
  }
}

template <typename T>
void forward_any(const dfk::ConvParams& p, const ForwardBuffers<T>& f) {
  with_width(p.width, [&]<int K>() {
    claim_for(items(p), [&](long begin, long end) { forward_range<T, K>(p, f, begin, end); });
  });
}

template <typename T>
void backward_any(const dfk::ConvParams& p, const BackwardBuffers<T>& g) {
  with_width(p.width, [&]<int K>() {
    claim_for(items(p), [&](long begin, long end) { backward_range<T, K>(p, g, begin, end); });
  });
  const int count = p.batch * p.n_chunks;
  fold(g.dw_part, g.dweight, count, static_cast<long>(p.width) * p.channels);
  if (p.flags & dfk::kConvHasBias) fold(g.db_part, g.dbias, count, p.channels);
}

}  // namespace

void forward(const dfk::ConvParams& p, const ForwardBuffers<float>& f) { forward_any(p, f); }
void forward(const dfk::ConvParams& p, const ForwardBuffers<double>& f) { forward_any(p, f); }
void backward(const dfk::ConvParams& p, const BackwardBuffers<float>& g) { backward_any(p, g); }
void backward(const dfk::ConvParams& p, const BackwardBuffers<double>& g) { backward_any(p, g); }

}  // namespace dfnet4::conv_cpu
