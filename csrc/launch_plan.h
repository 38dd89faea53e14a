// What every op's Metal launch plan (csrc/<op>_launch.h) shares: sizes, the threadgroup width
// along channels, and the buffers of the kernels that fold partial sums. A launch plan names the
// kernels, grids, group sizes, buffer indices and order of dispatches; eval_gpu and the
// emulated-Metal harness both follow it, so the tests run exactly what the GPU runs.
#pragma once

namespace dfnet4::launch {

struct Size3 {
  unsigned long x, y, z;
};

// Threads per threadgroup along channels (neighbouring threads read neighbouring channels; a
// multiple of the SIMD width whenever grid_x is).
inline unsigned long group_width(unsigned long grid_x) {
  const unsigned long max_width = 256;
  return grid_x < max_width ? grid_x : max_width;
}

// Buffers of an op's sum kernel: dst = sum over `count` slots of src, `inner` elements per slot.
enum SumBuffer { kSumSrc, kSumDst, kSumCount, kSumInner };

}  // namespace dfnet4::launch
