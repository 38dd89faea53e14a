// CPU evaluation of the compressed spectral loss: the kernel bodies the Metal kernels call, one
// chunk of pairs per work item, on our own threads; each chunk loop is compiled per instruction set
// (cpu_isa.h).
// No code here reads floating-point exception flags: without this GCC may not turn the selects of
// the float log/exp into blends (a compare "might trap") and the loops over pairs would not vectorise.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "spectral_loss_cpu.h"

#include "cpu_isa.h"
#include "kernels/spectral_loss.h"
#include "parallel.h"

namespace dfnet4::sl_cpu {
namespace {

using isa::Isa;

template <typename T>
struct ForwardChunks {
  template <Isa>
  static DF_INLINE void run(const dfk::SlParams& p, T gamma, const ForwardBuffers<T>& f, long begin, long end) {
    for (long c = begin; c < end; ++c) {
      dfk::sl_forward_item<T>(p, static_cast<int>(c), gamma, f.pred, f.target, f.part);
    }
  }
};

template <typename T>
struct BackwardChunks {
  template <Isa>
  static DF_INLINE void run(const dfk::SlParams& p, T gamma, const BackwardBuffers<T>& g, long begin, long end) {
    for (long c = begin; c < end; ++c) {
      dfk::sl_backward_item<T>(p, static_cast<int>(c), gamma, g.pred, g.target, g.dmag, g.dcplx, g.dpred,
                               g.dtarget);
    }
  }
};

// The chunks, one at a time on demand, each run by the loop's variant for this CPU.
template <class Range, typename T, typename Buffers>
void run_chunks(const dfk::SlParams& p, T gamma, const Buffers& buf) {
  const auto range = isa::variant<Range, const dfk::SlParams&, T, const Buffers&, long, long>(isa::best());
  dynamic_for(p.n_chunks, 1, [&](long begin, long end) { range(p, gamma, buf, begin, end); });
}

template <typename T>
void forward_any(const dfk::SlParams& p, T gamma, const ForwardBuffers<T>& f) {
  run_chunks<ForwardChunks<T>>(p, gamma, f);
  dfk::sl_fold<T>(p, 0, f.part, f.mag);
  dfk::sl_fold<T>(p, 1, f.part, f.cplx);
}

}  // namespace

void forward(const dfk::SlParams& p, double gamma, const ForwardBuffers<float>& f) {
  forward_any<float>(p, static_cast<float>(gamma), f);
}
void forward(const dfk::SlParams& p, double gamma, const ForwardBuffers<double>& f) {
  forward_any<double>(p, gamma, f);
}
void backward(const dfk::SlParams& p, double gamma, const BackwardBuffers<float>& g) {
  run_chunks<BackwardChunks<float>>(p, static_cast<float>(gamma), g);
}
void backward(const dfk::SlParams& p, double gamma, const BackwardBuffers<double>& g) {
  run_chunks<BackwardChunks<double>>(p, gamma, g);
}

}  // namespace dfnet4::sl_cpu
