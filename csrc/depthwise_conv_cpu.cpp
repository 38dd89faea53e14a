// CPU evaluation of the depthwise frequency conv: the kernel bodies the Metal kernels call, over
// spans of kDwSpan channels (contiguous, vectorised inner loops) and blocks of rows on our threads.
#include "depthwise_conv_cpu.h"

#include <algorithm>
#include <atomic>

#include "parallel.h"

// As in causal_conv_cpu.cpp: on x86-64 Linux build the item loops for AVX-512, AVX2+FMA and the
// baseline and let the loader pick (GCC >= 11); elsewhere build them once.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define DFNET4_DW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DFNET4_DW_CLONES
#endif

namespace dfnet4::dw_cpu {
namespace {

constexpr int W = dfk::kDwSpan;

struct Item {
  int blk, c0, n;
};
int spans(const dfk::DwParams& p) { return (p.channels + W - 1) / W; }
Item item(const dfk::DwParams& p, long e) {
  const int c0 = static_cast<int>(e % spans(p)) * W;
  return {static_cast<int>(e / spans(p)), c0, std::min(W, p.channels - c0)};
}
long items(const dfk::DwParams& p) { return static_cast<long>(p.n_blocks) * spans(p); }

// Items handed out in small batches on demand (a worker the OS delays does not hold up the others).
template <typename Fn>
void claim_for(long n, Fn&& fn) {
  constexpr long kBatch = 4;
  std::atomic<long> next{0};
  parallel_for(std::min<long>(num_threads(), (n + kBatch - 1) / kBatch), [&](long, long, int) {
    for (long e = next.fetch_add(kBatch); e < n; e = next.fetch_add(kBatch)) fn(e, std::min(n, e + kBatch));
  });
}

// Full spans with a compile-time width (the loops unroll, sums stay in registers); the rest at run time.
#define DFNET4_DW_RANGE(name, body, ...)                                                   \
  template <typename T>                                                                    \
  DFNET4_DW_CLONES void name(const dfk::DwParams& p, long begin, long end, __VA_ARGS__) { \
    for (long e = begin; e < end; ++e) {                                                   \
      const Item it = item(p, e);                                                          \
      if (it.n == W) {                                                                     \
        dfk::body<T, W, W>(p, it.blk, it.c0, W, a, b, c);                                  \
      } else {                                                                             \
        dfk::body<T, W, 0>(p, it.blk, it.c0, it.n, a, b, c);                               \
      }                                                                                    \
    }                                                                                      \
  }

DFNET4_DW_RANGE(gather_range, dw_gather_item, const T* a, const T* b, T* c)
DFNET4_DW_RANGE(scatter_range, dw_scatter_item, const T* a, const T* b, T* c)
DFNET4_DW_RANGE(weight_grad_range, dw_weight_grad_item, const T* a, const T* b, T* c)
#undef DFNET4_DW_RANGE

template <typename T>
DFNET4_DW_CLONES void fold(const T* part, T* dst, int count, long inner) {
  for (long j0 = 0; j0 < inner; j0 += W) {
    dfk::dw_fold<T, W>(part, dst, count, inner, j0, static_cast<int>(std::min<long>(W, inner - j0)));
  }
}

}  // namespace

void gather(const dfk::DwParams& p, const float* in, const float* w, float* out) {
  claim_for(items(p), [&](long b, long e) { gather_range<float>(p, b, e, in, w, out); });
}
void gather(const dfk::DwParams& p, const double* in, const double* w, double* out) {
  claim_for(items(p), [&](long b, long e) { gather_range<double>(p, b, e, in, w, out); });
}
void scatter(const dfk::DwParams& p, const float* in, const float* w, float* out) {
  claim_for(items(p), [&](long b, long e) { scatter_range<float>(p, b, e, in, w, out); });
}
void scatter(const dfk::DwParams& p, const double* in, const double* w, double* out) {
  claim_for(items(p), [&](long b, long e) { scatter_range<double>(p, b, e, in, w, out); });
}

template <typename T>
static void weight_grad_any(const dfk::DwParams& p, const T* big_side, const T* small_side, T* part, T* dweight) {
  claim_for(items(p), [&](long b, long e) { weight_grad_range<T>(p, b, e, big_side, small_side, part); });
  fold(part, dweight, p.n_blocks, static_cast<long>(p.width) * p.channels);
}
void weight_grad(const dfk::DwParams& p, const float* bs, const float* ss, float* part, float* dw) {
  weight_grad_any(p, bs, ss, part, dw);
}
void weight_grad(const dfk::DwParams& p, const double* bs, const double* ss, double* part, double* dw) {
  weight_grad_any(p, bs, ss, part, dw);
}

}  // namespace dfnet4::dw_cpu
