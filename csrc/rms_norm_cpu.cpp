// CPU evaluation of the RMSNorm: the kernel bodies the Metal kernels call, one thread per row with
// chunks of kRmsWidth contiguous channels (vectorised inner loops), blocks of kRmsRows rows handed
// out to our own threads; each block loop is compiled per instruction set (cpu_isa.h).
#include "rms_norm_cpu.h"

#include "cpu_isa.h"
#include "fold_cpu.h"
#include "kernels/rms_norm.h"
#include "parallel.h"

namespace dfnet4::rms_cpu {
namespace {

using isa::Isa;

constexpr int W = dfk::kRmsWidth;
constexpr long kGrain = 1;  // blocks per claim (32 rows each)

// Blocks [begin, end) of the forward: y row by row.
template <typename T>
struct ForwardLoop {
  template <Isa>
  static DF_INLINE void run(const dfk::RmsParams& p, T eps, const ForwardBuffers<T>& f, long begin, long end) {
    for (long blk = begin; blk < end; ++blk) {
      const int r1 = dfk::rms_block_end(p, static_cast<int>(blk));
      for (int row = static_cast<int>(blk) * dfk::kRmsRows; row < r1; ++row) {
        dfk::rms_forward_row<T, W, dfk::RmsOneThread<T>>(p, row, 0, 1, f.x, f.weight, eps, f.y);
      }
    }
  }
};

// Blocks [begin, end) of the backward: dx and each block's dweight partial.
template <typename T>
struct BackwardLoop {
  template <Isa>
  static DF_INLINE void run(const dfk::RmsParams& p, T eps, const BackwardBuffers<T>& g, long begin, long end) {
    for (long blk = begin; blk < end; ++blk) {
      dfk::rms_backward_block<T, W, dfk::RmsOneThread<T>>(p, static_cast<int>(blk), 0, 1, g.x, g.weight, g.dy, eps,
                                                          g.dx, g.part);
    }
  }
};

template <class Loop, typename T, class Buffers>
void run_blocks(const dfk::RmsParams& p, T eps, const Buffers& buf) {
  const auto loop = isa::variant<Loop, const dfk::RmsParams&, T, const Buffers&, long, long>(isa::best());
  dynamic_for(p.n_blocks, kGrain, [&](long lo, long hi) { loop(p, eps, buf, lo, hi); });
}

template <typename T>
void forward_any(const dfk::RmsParams& p, T eps, const ForwardBuffers<T>& f) {
  run_blocks<ForwardLoop<T>>(p, eps, f);
}

template <typename T>
void backward_any(const dfk::RmsParams& p, T eps, const BackwardBuffers<T>& g) {
  run_blocks<BackwardLoop<T>>(p, eps, g);
  fold_partials<T, W>(isa::best())(g.part, g.dweight, p.n_blocks, p.channels);
}

}  // namespace

void forward(const dfk::RmsParams& p, double eps, const ForwardBuffers<float>& f) {
  forward_any<float>(p, static_cast<float>(eps), f);
}
void forward(const dfk::RmsParams& p, double eps, const ForwardBuffers<double>& f) { forward_any<double>(p, eps, f); }
void backward(const dfk::RmsParams& p, double eps, const BackwardBuffers<float>& g) {
  backward_any<float>(p, static_cast<float>(eps), g);
}
void backward(const dfk::RmsParams& p, double eps, const BackwardBuffers<double>& g) {
  backward_any<double>(p, eps, g);
}

}  // namespace dfnet4::rms_cpu
