// CPU evaluation of the batch norm: the kernel bodies the Metal kernels call, over spans of kBnSpan
// channels (contiguous, vectorised inner loops) and blocks of rows on our own threads; each item
// loop is compiled per instruction set (cpu_isa.h).
#include "batch_norm_cpu.h"

#include "kernels/batch_norm.h"
#include "span_items.h"

namespace dfnet4::bn_cpu {
namespace {

using isa::Isa;

constexpr int W = dfk::kBnSpan;
constexpr long kGrain = 4;  // items per claim (a block of 256 rows x 64 channels each)

// The four block passes, each a body over one item, NF > 0 when its span has exactly NF channels.
template <typename T>
struct Stats {
  typedef ForwardBuffers<T> Buffers;
  template <int NF>
  static DF_INLINE void run(const dfk::BnParams& p, const SpanItem& it, T, const Buffers& f) {
    dfk::bn_stats_item<T, W, NF>(p, it.blk, it.c0, it.n, f.x, f.part_mean, f.part_m2);
  }
};

template <typename T>
struct Apply {
  typedef ForwardBuffers<T> Buffers;
  template <int NF>
  static DF_INLINE void run(const dfk::BnParams& p, const SpanItem& it, T eps, const Buffers& f) {
    dfk::bn_apply_item<T, W, NF>(p, it.blk, it.c0, it.n, f.x, f.weight, f.bias, f.mean, f.var, eps, f.y);
  }
};

template <typename T>
struct GradStats {
  typedef BackwardBuffers<T> Buffers;
  template <int NF>
  static DF_INLINE void run(const dfk::BnParams& p, const SpanItem& it, T eps, const Buffers& g) {
    dfk::bn_grad_stats_item<T, W, NF>(p, it.blk, it.c0, it.n, g.x, g.weight, g.bias, g.mean, g.var, eps, g.dy,
                                      g.part_g, g.part_gx);
  }
};

template <typename T>
struct GradApply {
  typedef BackwardBuffers<T> Buffers;
  template <int NF>
  static DF_INLINE void run(const dfk::BnParams& p, const SpanItem& it, T eps, const Buffers& g) {
    dfk::bn_grad_apply_item<T, W, NF>(p, it.blk, it.c0, it.n, g.x, g.weight, g.bias, g.mean, g.var, eps, g.dy,
                                      g.dmean, g.dvar, g.dweight, g.dbias, g.dx);
  }
};

// A pass's items, a few at a time on demand, each run by the loop's variant for this CPU.
template <class Body, typename T>
void run_pass(const dfk::BnParams& p, T eps, const typename Body::Buffers& buf, Isa cpu) {
  run_span_pass<W, Body, dfk::BnParams, T, const typename Body::Buffers&>(p, kGrain, cpu, eps, buf);
}

template <typename T>
void forward_any(const dfk::BnParams& p, T eps, const ForwardBuffers<T>& f) {
  const auto cpu = isa::best();
  run_pass<Stats<T>>(p, eps, f, cpu);
  for (int c = 0; c < p.channels; ++c) dfk::bn_stats_combine<T>(p, c, f.part_mean, f.part_m2, f.mean, f.var);
  run_pass<Apply<T>>(p, eps, f, cpu);
}

template <typename T>
void backward_any(const dfk::BnParams& p, T eps, const BackwardBuffers<T>& g) {
  const auto cpu = isa::best();
  run_pass<GradStats<T>>(p, eps, g, cpu);
  for (int c = 0; c < p.channels; ++c) {
    dfk::bn_grad_combine<T>(p, c, g.part_g, g.part_gx, g.var, eps, g.dweight, g.dbias);
  }
  run_pass<GradApply<T>>(p, eps, g, cpu);
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
