// Metal kernels of the RMSNorm: thin wrappers that map GPU thread positions onto the shared kernel
// bodies (csrc/kernels/rms_norm.h). Launch plan: csrc/rms_norm_launch.h.
// Inputs are float32 (the op casts half/bfloat16 inputs); the GPU has no double.
#include <metal_stdlib>

using namespace metal;

#include "kernels/rms_norm.h"

// The row's threads are one SIMD group: simd_sum adds their sums.
template <typename T>
struct RmsSimdSum {
  static inline T sum(T v) { return simd_sum(v); }
};

// One SIMD group per row (gid.y); a whole SIMD group leaves together past the last row.
[[kernel]] void dfnet4_rms_forward_f32(
    device const float* x [[buffer(0)]], device const float* weight [[buffer(1)]],
    device float* y [[buffer(2)]], constant dfk::RmsParams& params [[buffer(3)]],
    constant float& eps [[buffer(4)]], uint3 gid [[thread_position_in_grid]],
    uint lane [[thread_index_in_simdgroup]], uint lanes [[threads_per_simdgroup]]) {
  const dfk::RmsParams p = params;
  if ((int)gid.y >= p.rows) return;
  dfk::rms_forward_row<float, 1, RmsSimdSum<float> >(p, (int)gid.y, (int)lane, (int)lanes, x, weight, eps, y);
}

// One SIMD group per block of rows (gid.y): dx and the block's dweight partial.
[[kernel]] void dfnet4_rms_backward_f32(
    device const float* x [[buffer(0)]], device const float* weight [[buffer(1)]],
    device const float* dy [[buffer(2)]], device float* dx [[buffer(3)]],
    device float* part [[buffer(4)]], constant dfk::RmsParams& params [[buffer(5)]],
    constant float& eps [[buffer(6)]], uint3 gid [[thread_position_in_grid]],
    uint lane [[thread_index_in_simdgroup]], uint lanes [[threads_per_simdgroup]]) {
  const dfk::RmsParams p = params;
  if ((int)gid.y >= p.n_blocks) return;
  dfk::rms_backward_block<float, 1, RmsSimdSum<float> >(p, (int)gid.y, (int)lane, (int)lanes, x, weight, dy, eps,
                                                        dx, part);
}

// Fold: one thread per channel, blocks in order.
[[kernel]] void dfnet4_rms_dweight_fold_f32(
    device const float* part [[buffer(0)]], device float* dweight [[buffer(1)]],
    constant dfk::RmsParams& params [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  const dfk::RmsParams p = params;
  if ((int)gid >= p.channels) return;
  dfk::rms_dweight_fold<float>(p, (int)gid, part, dweight);
}
