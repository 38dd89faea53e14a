// CPU evaluation of the batch norm: the kernel bodies the Metal kernels call, over spans of kBnSpan
// channels (contiguous, vectorised inner loops) and blocks of rows on our own threads.
#include "batch_norm_cpu.h"

#include <algorithm>
#include <atomic>

#include "parallel.h"

// As in causal_conv_cpu.cpp: on x86-64 Linux build the item loops for AVX-512, AVX2+FMA and the
// baseline and let the loader pick (GCC >= 11); elsewhere build them once.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define DFNET4_BN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DFNET4_BN_CLONES
#endif

namespace dfnet4::bn_cpu {
namespace {

constexpr int W = dfk::kBnSpan;

struct Item {
  int blk, c0, n;
};
int spans(const dfk::BnParams& p) { return (p.channels + W - 1) / W; }
Item item(const dfk::BnParams& p, long e) {
  const int c0 = static_cast<int>(e % spans(p)) * W;
  return {static_cast<int>(e / spans(p)), c0, std::min(W, p.channels - c0)};
}
long items(const dfk::BnParams& p) { return static_cast<long>(p.n_blocks) * spans(p); }

// Items [0, n) handed out in small batches on demand, so a worker the OS delays (a busy machine)
// does not hold up the others as it would with one fixed slice per worker.
template <typename Fn>
void claim_for(long n, Fn&& fn) {
  constexpr long kBatch = 4;
  std::atomic<long> next{0};
  parallel_for(std::min<long>(num_threads(), (n + kBatch - 1) / kBatch), [&](long, long, int) {
    for (long e = next.fetch_add(kBatch); e < n; e = next.fetch_add(kBatch)) fn(e, std::min(n, e + kBatch));
  });
}

// Full spans with a compile-time width (the loops unroll, sums stay in registers); the rest at run time.
#define DFNET4_BN_DISPATCH(body, ...)                                       \
  if (it.n == W) {                                                          \
    dfk::body<T, W, W>(p, it.blk, it.c0, W, __VA_ARGS__);                   \
  } else {                                                                  \
    dfk::body<T, W, 0>(p, it.blk, it.c0, it.n, __VA_ARGS__);                \
  }

template <typename T>
DFNET4_BN_CLONES void stats_range(const dfk::BnParams& p, const ForwardBuffers<T>& f, long begin, long end) {
  for (long e = begin; e < end; ++e) {
    const Item it = item(p, e);
    DFNET4_BN_DISPATCH(bn_stats_item, f.x, f.part_mean, f.part_m2)
  }
}

template <typename T>
DFNET4_BN_CLONES void apply_range(const dfk::BnParams& p, T eps, const ForwardBuffers<T>& f, long begin, long end) {
  for (long e = begin; e < end; ++e) {
    const Item it = item(p, e);
    DFNET4_BN_DISPATCH(bn_apply_item, f.x, f.weight, f.bias, f.mean, f.var, eps, f.y)
  }
}

template <typename T>
DFNET4_BN_CLONES void grad_stats_range(const dfk::BnParams& p, T eps, const BackwardBuffers<T>& g, long begin,
                                       long end) {
  for (long e = begin; e < end; ++e) {
    const Item it = item(p, e);
    DFNET4_BN_DISPATCH(bn_grad_stats_item, g.x, g.weight, g.bias, g.mean, g.var, eps, g.dy, g.part_g, g.part_gx)
  }
}

template <typename T>
DFNET4_BN_CLONES void grad_apply_range(const dfk::BnParams& p, T eps, const BackwardBuffers<T>& g, long begin,
                                       long end) {
  for (long e = begin; e < end; ++e) {
    const Item it = item(p, e);
    DFNET4_BN_DISPATCH(bn_grad_apply_item, g.x, g.weight, g.bias, g.mean, g.var, eps, g.dy, g.dmean, g.dvar,
                       g.dweight, g.dbias, g.dx)
  }
}

#undef DFNET4_BN_DISPATCH

template <typename T>
void forward_any(const dfk::BnParams& p, T eps, const ForwardBuffers<T>& f) {
  claim_for(items(p), [&](long b, long e) { stats_range<T>(p, f, b, e); });
  for (int c = 0; c < p.channels; ++c) dfk::bn_stats_combine<T>(p, c, f.part_mean, f.part_m2, f.mean, f.var);
  claim_for(items(p), [&](long b, long e) { apply_range<T>(p, eps, f, b, e); });
}

template <typename T>
void backward_any(const dfk::BnParams& p, T eps, const BackwardBuffers<T>& g) {
  claim_for(items(p), [&](long b, long e) { grad_stats_range<T>(p, eps, g, b, e); });
  for (int c = 0; c < p.channels; ++c) dfk::bn_grad_combine<T>(p, c, g.part_g, g.part_gx, g.var, eps, g.dweight, g.dbias);
  claim_for(items(p), [&](long b, long e) { grad_apply_range<T>(p, eps, g, b, e); });
}

}  // namespace

void forward(const dfk::BnParams& p, double eps, const ForwardBuffers<float>& f) {
  forward_any<float>(p, static_cast<float>(eps), f);
}
void forward(const dfk::BnParams& p, double eps, const ForwardBuffers<double>& f) { forward_any<double>(p, eps, f); }
void backward(const dfk::BnParams& p, double eps, const BackwardBuffers<float>& g) {
  backward_any<float>(p, static_cast<float>(eps), g);
}
void backward(const dfk::BnParams& p, double eps, const BackwardBuffers<double>& g) {
  backward_any<double>(p, eps, g);
}

}  // namespace dfnet4::bn_cpu
