// CPU evaluation of the causal conv: the kernel bodies the Metal kernels call, over spans of
// kConvBlock channels (contiguous, vectorised inner loops) on our own threads; each item loop is
// compiled per instruction set (cpu_isa.h).
// No code here reads floating-point exception flags; without this GCC may not turn the clamps of
// dfk::fastmath::exp into selects (a compare "might trap"), and the SiLU loops would not vectorise.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "causal_conv_cpu.h"

#include <algorithm>

#include "causal_conv_width.h"
#include "cpu_isa.h"
#include "fold_cpu.h"
#include "kernels/causal_conv_bwd.h"
#include "kernels/causal_conv_fwd.h"
#include "parallel.h"

namespace dfnet4::conv_cpu {
namespace {

using conv_width::with_width;
using isa::Isa;

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

// The forward and backward body of one item, with NF > 0 when its span has exactly NF channels.
template <typename T, int K>
struct ForwardItem {
  typedef ForwardBuffers<T> Buffers;
  template <int NF>
  static DF_INLINE void run(const dfk::ConvParams& p, const Item& it, const Buffers& f) {
    dfk::conv_forward_item<T, K, W, NF>(p, it.b, it.chunk, it.c0, it.n, f.x, f.window, f.weight, f.bias, f.y,
                                        f.new_window);
  }
};

template <typename T, int K>
struct BackwardItem {
  typedef BackwardBuffers<T> Buffers;
  template <int NF>
  static DF_INLINE void run(const dfk::ConvParams& p, const Item& it, const Buffers& g) {
    dfk::conv_backward_item<T, K, W, NF>(p, it.b, it.chunk, it.c0, it.n, g.x, g.window, g.weight, g.bias, g.dy,
                                         g.dnew_window, g.dx, g.dwindow, g.dw_part, g.db_part);
  }
};

// Items [begin, end): full blocks with a compile-time count (fully unrolled vector loops, sums kept
// in registers), the row's last, narrower block with a run-time one.
template <class Body>
struct ItemRange {
  template <Isa>
  static DF_INLINE void run(const dfk::ConvParams& p, const typename Body::Buffers& buf, long begin, long end) {
    for (long e = begin; e < end; ++e) {
      const Item it = item(p, e);
      if (it.n == W) {
        Body::template run<W>(p, it, buf);
      } else {
        Body::template run<0>(p, it, buf);
      }
    }
  }
};

// The work items, one at a time on demand, each run by the item loop's variant for this CPU.
template <class Range, typename Buffers>
void run_items(const dfk::ConvParams& p, const Buffers& buf, isa::Isa cpu) {
  const auto range = isa::variant<Range, const dfk::ConvParams&, const Buffers&, long, long>(cpu);
  dynamic_for(items(p), 1, [&](long begin, long end) { range(p, buf, begin, end); });
}

template <typename T>
void forward_any(const dfk::ConvParams& p, const ForwardBuffers<T>& f) {
  const auto cpu = isa::best();
  with_width(p.width, [&]<int K>() { run_items<ItemRange<ForwardItem<T, K>>>(p, f, cpu); });
}

template <typename T>
void backward_any(const dfk::ConvParams& p, const BackwardBuffers<T>& g) {
  const auto cpu = isa::best();
  with_width(p.width, [&]<int K>() { run_items<ItemRange<BackwardItem<T, K>>>(p, g, cpu); });
  const auto fold = fold_partials<T, W>(cpu);
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
