// The work items of a CPU kernel over (block of rows, span of up to W contiguous channels), as the
// batch norm and the depthwise conv run them: item e is block e / spans, channels [c0, c0 + n) of
// span e % spans. A span of exactly W channels runs a body compiled for that count (loops fully
// unrolled, sums in registers), a narrower last span one for a run-time count.
#pragma once

#include <algorithm>

#include "cpu_isa.h"
#include "kernels/defines.h"
#include "parallel.h"

namespace dfnet4 {

struct SpanItem {
  int blk, c0, n;
};

inline int span_count(int channels, int width) { return (channels + width - 1) / width; }
inline long span_items(long blocks, int channels, int width) { return blocks * span_count(channels, width); }
inline SpanItem span_item(long e, int channels, int width) {
  const int spans = span_count(channels, width);
  const int c0 = static_cast<int>(e % spans) * width;
  return {static_cast<int>(e / spans), c0, std::min(width, channels - c0)};
}

// Items [begin, end) of one pass: Body::run<W>(p, item, a...) on a span of exactly W channels,
// Body::run<0> on a narrower last one. A loop for isa::variant (compiled per instruction set).
template <int W, class Body, class P, class... A>
struct SpanItemLoop {
  template <isa::Isa>
  static DF_INLINE void run(const P& p, A... a, long begin, long end) {
    for (long e = begin; e < end; ++e) {
      const SpanItem it = span_item(e, p.channels, W);
      if (it.n == W) {
        Body::template run<W>(p, it, a...);
      } else {
        Body::template run<0>(p, it, a...);
      }
    }
  }
};

// Every item of a pass over p.n_blocks blocks of rows and p.channels channels, `grain` items per
// claim, handed out on demand to dfnet4's threads, each run by the loop's variant for `cpu`.
template <int W, class Body, class P, class... A>
void run_span_pass(const P& p, long grain, isa::Isa cpu, A... a) {
  const auto loop = isa::variant<SpanItemLoop<W, Body, P, A...>, const P&, A..., long, long>(cpu);
  dynamic_for(span_items(p.n_blocks, p.channels, W), grain, [&](long lo, long hi) { loop(p, a..., lo, hi); });
}

}  // namespace dfnet4
