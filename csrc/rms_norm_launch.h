// Metal launch plan of the RMSNorm, shared by eval_gpu (rms_norm_metal.cpp) and the emulated-Metal
// harness (metal_emu/rms_norm_emu.cpp) so both run exactly the same grids.
#pragma once

#include "kernels/rms_norm_params.h"
#include "launch_plan.h"

namespace dfnet4::rms_launch {

using namespace launch;

// Forward: one dispatch. Backward: dx and the blocks' dweight partials, then the fold per channel
// (metal/rms_norm.metal). MLX orders the dispatches by the buffers they share.
inline const char* forward_kernel() { return "dfnet4_rms_forward_f32"; }
inline const char* backward_kernel() { return "dfnet4_rms_backward_f32"; }
inline const char* fold_kernel() { return "dfnet4_rms_dweight_fold_f32"; }

// SIMD groups per threadgroup of the row kernels.
constexpr unsigned long kSimdsPerGroup = 8;

inline unsigned long min_ul(unsigned long a, unsigned long b) { return a < b ? a : b; }

// Row kernels: one SIMD group (kRmsSimd threads along x; a threadgroup's SIMD groups are its rows
// along y, as threads form SIMD groups in linear order) per row (forward) or block of kRmsRows rows
// (backward). Callers skip these dispatches when there are no rows.
inline Size3 forward_grid(const dfk::RmsParams& p) { return {(unsigned long)dfk::kRmsSimd, (unsigned long)p.rows, 1}; }
inline Size3 forward_group(const dfk::RmsParams& p) {
  return {(unsigned long)dfk::kRmsSimd, min_ul(kSimdsPerGroup, (unsigned long)p.rows), 1};
}
inline Size3 backward_grid(const dfk::RmsParams& p) {
  return {(unsigned long)dfk::kRmsSimd, (unsigned long)p.n_blocks, 1};
}
inline Size3 backward_group(const dfk::RmsParams& p) {
  return {(unsigned long)dfk::kRmsSimd, min_ul(kSimdsPerGroup, (unsigned long)p.n_blocks), 1};
}
// Fold: one thread per channel.
inline Size3 channel_grid(const dfk::RmsParams& p) { return {(unsigned long)p.channels, 1, 1}; }
inline Size3 channel_group(const dfk::RmsParams& p) { return {group_width(p.channels), 1, 1}; }

// Buffer indices of the kernels (metal/rms_norm.metal).
enum ForwardBuffer { kFwdX, kFwdWeight, kFwdY, kFwdParams, kFwdEps };
enum BackwardBuffer { kBwdX, kBwdWeight, kBwdDy, kBwdDx, kBwdPart, kBwdParams, kBwdEps };
enum FoldBuffer { kFoldPart, kFoldDweight, kFoldParams };

}  // namespace dfnet4::rms_launch
