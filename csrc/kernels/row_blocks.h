// What the row-blocked normalisation kernels (batch_norm.h, rms_norm.h) share: where a block of
// rows ends, and 1 / sqrt (the same expression on the CPU and on Metal).
#pragma once

#include "kernels/defines.h"

namespace dfk {

// One past the last row of block `blk`, blocks of `per_block` rows out of `rows`.
DF_INLINE int row_block_end(int rows, int blk, int per_block) {
  const int r1 = (blk + 1) * per_block;
  return r1 < rows ? r1 : rows;
}

template <typename T>
DF_INLINE T inv_sqrt(T v) { return T(1) / DF_MATH::sqrt(v); }

}  // namespace dfk
