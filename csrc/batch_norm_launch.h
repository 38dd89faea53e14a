// Metal launch plan of the batch norm, shared by eval_gpu (batch_norm_metal.cpp) and the
// emulated-Metal harness (metal_emu/batch_norm_emu.cpp) so both run exactly the same grids.
#pragma once

#include "kernels/batch_norm_params.h"
#include "launch_plan.h"

namespace dfnet4::bn_launch {

using namespace launch;

// Forward: stats -> combine -> apply; backward: grad_stats -> grad_combine -> grad_apply
// (metal/batch_norm.metal). MLX orders the dispatches by the buffers they share.
inline const char* stats_kernel() { return "dfnet4_bn_stats_f32"; }
inline const char* combine_kernel() { return "dfnet4_bn_combine_f32"; }
inline const char* apply_kernel() { return "dfnet4_bn_apply_f32"; }
inline const char* grad_stats_kernel() { return "dfnet4_bn_grad_stats_f32"; }
inline const char* grad_combine_kernel() { return "dfnet4_bn_grad_combine_f32"; }
inline const char* grad_apply_kernel() { return "dfnet4_bn_grad_apply_f32"; }

// Block passes: one thread per (channel, block of rows); no collectives, so any group shape works.
inline Size3 block_grid(const dfk::BnParams& p) { return {(unsigned long)p.channels, (unsigned long)p.n_blocks, 1}; }
inline Size3 block_group(const dfk::BnParams& p) { return {group_width(p.channels), 1, 1}; }
// Folds: one thread per channel.
inline Size3 channel_grid(const dfk::BnParams& p) { return {(unsigned long)p.channels, 1, 1}; }
inline Size3 channel_group(const dfk::BnParams& p) { return {group_width(p.channels), 1, 1}; }

// Buffer indices of the kernels (metal/batch_norm.metal).
enum StatsBuffer { kStatsX, kStatsPartMean, kStatsPartM2, kStatsParams };
enum CombineBuffer { kCombinePartMean, kCombinePartM2, kCombineMean, kCombineVar, kCombineParams };
enum ApplyBuffer { kApplyX, kApplyWeight, kApplyBias, kApplyMean, kApplyVar, kApplyY, kApplyParams, kApplyEps };
enum GradStatsBuffer {
  kGStatsX, kGStatsWeight, kGStatsBias, kGStatsMean, kGStatsVar, kGStatsDy, kGStatsPartG, kGStatsPartGx,
  kGStatsParams, kGStatsEps,
};
enum GradCombineBuffer {
  kGCombinePartG, kGCombinePartGx, kGCombineVar, kGCombineDweight, kGCombineDbias, kGCombineParams, kGCombineEps,
};
enum GradApplyBuffer {
  kGApplyX, kGApplyWeight, kGApplyBias, kGApplyMean, kGApplyVar, kGApplyDy, kGApplyDmean, kGApplyDvar,
  kGApplyDweight, kGApplyDbias, kGApplyDx, kGApplyParams, kGApplyEps,
};

}  // namespace dfnet4::bn_launch
