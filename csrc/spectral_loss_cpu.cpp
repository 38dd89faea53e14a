// CPU evaluation of the compressed spectral loss: the kernel bodies the Metal kernels call, one
// chunk of pairs per work item, on our own threads.
// No code here reads floating-point exception flags or errno: without these GCC keeps sqrt as a
// libm call (it may set errno) and may not turn the clamps into selects, and the loops over pairs
// would not vectorise.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#endif
#include "spectral_loss_cpu.h"

#include <algorithm>
#include <atomic>

#include "parallel.h"

// As in causal_conv_cpu.cpp: on x86-64 Linux build the item loops for AVX-512, AVX2+FMA and the
// baseline and let the loader pick (GCC >= 11); elsewhere build them once.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define DFNET4_SL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DFNET4_SL_CLONES
#endif

namespace dfnet4::sl_cpu {
namespace {

// Chunks handed out one at a time on demand (a delayed worker does not hold up the others).
template <typename Fn>
void claim_for(long n, Fn&& fn) {
  std::atomic<long> next{0};
  parallel_for(std::min<long>(num_threads(), n), [&](long, long, int) {
    for (long e = next.fetch_add(1); e < n; e = next.fetch_add(1)) fn(e);
  });
}

template <typename T>
DFNET4_SL_CLONES void forward_chunk(const dfk::SlParams& p, T gamma, const ForwardBuffers<T>& f, long c) {
  dfk::sl_forward_item<T>(p, static_cast<int>(c), gamma, f.pred, f.target, f.part);
}

template <typename T>
DFNET4_SL_CLONES void backward_chunk(const dfk::SlParams& p, T gamma, const BackwardBuffers<T>& g, long c) {
  dfk::sl_backward_item<T>(p, static_cast<int>(c), gamma, g.pred, g.target, g.dmag, g.dcplx, g.dpred, g.dtarget);
}

template <typename T>
void forward_any(const dfk::SlParams& p, T gamma, const ForwardBuffers<T>& f) {
  claim_for(p.n_chunks, [&](long c) { forward_chunk<T>(p, gamma, f, c); });
  dfk::sl_fold<T>(p, 0, f.part, f.mag);
  dfk::sl_fold<T>(p, 1, f.part, f.cplx);
}

template <typename T>
void backward_any(const dfk::SlParams& p, T gamma, const BackwardBuffers<T>& g) {
  claim_for(p.n_chunks, [&](long c) { backward_chunk<T>(p, gamma, g, c); });
}

}  // namespace

void forward(const dfk::SlParams& p, double gamma, const ForwardBuffers<float>& f) {
  forward_any<float>(p, static_cast<float>(gamma), f);
}
void forward(const dfk::SlParams& p, double gamma, const ForwardBuffers<double>& f) {
  forward_any<double>(p, gamma, f);
}
void backward(const dfk::SlParams& p, double gamma, const BackwardBuffers<float>& g) {
  backward_any<float>(p, static_cast<float>(gamma), g);
}
void backward(const dfk::SlParams& p, double gamma, const BackwardBuffers<double>& g) {
  backward_any<double>(p, gamma, g);
}

}  // namespace dfnet4::sl_cpu
