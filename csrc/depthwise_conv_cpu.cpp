// CPU evaluation of the depthwise frequency conv: the kernel bodies the Metal kernels call, over
// spans of kDwSpan channels (contiguous, vectorised inner loops) and blocks of rows on our own
// threads; each item loop is compiled per instruction set (cpu_isa.h).
#include "depthwise_conv_cpu.h"

#include "fold_cpu.h"
#include "kernels/depthwise_conv.h"
#include "span_items.h"

namespace dfnet4::dw_cpu {
namespace {

constexpr int W = dfk::kDwSpan;
constexpr long kGrain = 4;  // items per claim (8 rows x 64 channels each)

// The three block passes, each a body over one item, NF > 0 when its span has exactly NF channels.
template <typename T, bool SCATTER>
struct Map {
  template <int NF>
  static DF_INLINE void run(const dfk::DwParams& p, const SpanItem& it, const T* in, const T* w, T* out) {
    dfk::dw_map_item<T, W, NF, SCATTER>(p, it.blk, it.c0, it.n, in, w, out);
  }
};

template <typename T>
struct WeightGrad {
  template <int NF>
  static DF_INLINE void run(const dfk::DwParams& p, const SpanItem& it, const T* big, const T* small, T* part) {
    dfk::dw_weight_grad_item<T, W, NF>(p, it.blk, it.c0, it.n, big, small, part);
  }
};

// A pass's items, a few at a time on demand, each run by the loop's variant for this CPU.
template <class Body, typename T>
void run_pass(const dfk::DwParams& p, const T* a, const T* b, T* c) {
  run_span_pass<W, Body, dfk::DwParams, const T*, const T*, T*>(p, kGrain, isa::best(), a, b, c);
}

template <typename T>
void weight_grad_any(const dfk::DwParams& p, const T* big_side, const T* small_side, T* part, T* dweight) {
  run_pass<WeightGrad<T>>(p, big_side, small_side, part);
  fold_partials<T, W>(isa::best())(part, dweight, p.n_blocks, static_cast<long>(p.width) * p.channels);
}

}  // namespace

void gather(const dfk::DwParams& p, const float* in, const float* w, float* out) {
  run_pass<Map<float, false>>(p, in, w, out);
}
void gather(const dfk::DwParams& p, const double* in, const double* w, double* out) {
  run_pass<Map<double, false>>(p, in, w, out);
}
void scatter(const dfk::DwParams& p, const float* in, const float* w, float* out) {
  run_pass<Map<float, true>>(p, in, w, out);
}
void scatter(const dfk::DwParams& p, const double* in, const double* w, double* out) {
  run_pass<Map<double, true>>(p, in, w, out);
}
void weight_grad(const dfk::DwParams& p, const float* bs, const float* ss, float* part, float* dw) {
  weight_grad_any(p, bs, ss, part, dw);
}
void weight_grad(const dfk::DwParams& p, const double* bs, const double* ss, double* part, double* dw) {
  weight_grad_any(p, bs, ss, part, dw);
}

}  // namespace dfnet4::dw_cpu
