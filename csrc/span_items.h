// The work items of a CPU kernel over (block of rows, span of up to W contiguous channels), as the
// batch norm and the depthwise conv run them: item e is block e / spans, channels [c0, c0 + n) of
// span e % spans. A span of exactly W channels runs a body compiled for that count (loops fully
// unrolled, sums in registers), a narrower last span one for a run-time count.
#pragma once

#include <algorithm>

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

}  // namespace dfnet4
