// The CPU fold of per-work-item partial sums (dfk::conv_sum_partials: dst[j] = sum over slots, in
// order, of src[slot * inner + j]) in spans of W contiguous j, compiled per instruction set. Shared
// by the backward passes whose weight gradients go through such partials (the causal and the
// depthwise conv, the RMSNorm).
#pragma once

#include <algorithm>

#include "cpu_isa.h"
#include "kernels/causal_conv_bwd.h"

namespace dfnet4 {

template <typename T, int W>
struct FoldPartials {
  template <isa::Isa>
  static DF_INLINE void run(const T* src, T* dst, int count, long inner) {
    for (long j0 = 0; j0 < inner; j0 += W) {
      dfk::conv_sum_partials<T, W>(src, dst, count, inner, j0, static_cast<int>(std::min<long>(W, inner - j0)));
    }
  }
};

// The fold's variant for `cpu`: fold(src, dst, count, inner).
template <typename T, int W>
auto fold_partials(isa::Isa cpu) {
  return isa::variant<FoldPartials<T, W>, const T*, T*, int, long>(cpu);
}

}  // namespace dfnet4
