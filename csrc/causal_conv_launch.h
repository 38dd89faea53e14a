// Metal launch plan of the causal conv, shared by eval_gpu (causal_conv_metal.cpp) and the
// emulated-Metal harness (metal_emu/causal_conv_emu.cpp) so both run exactly the same grids.
#pragma once

#include <string>

#include "kernels/causal_conv_params.h"
#include "launch_plan.h"

namespace dfnet4::conv_launch {

using namespace launch;

// One instantiation per width K (metal/causal_conv.metal instantiates 1 .. kConvMaxWidth).
inline std::string forward_kernel(int width) {
  return "dfnet4_causal_conv_fwd_f32_k" + std::to_string(width);
}
inline std::string backward_kernel(int width) {
  return "dfnet4_causal_conv_bwd_f32_k" + std::to_string(width);
}

// Forward and backward: one thread per (channel, chunk, batch); no collectives, so any group
// shape works.
inline Size3 grid(const dfk::ConvParams& p) {
  return {(unsigned long)p.channels, (unsigned long)p.n_chunks, (unsigned long)p.batch};
}
inline Size3 group(const dfk::ConvParams& p) { return {group_width(p.channels), 1, 1}; }

// After the backward kernel, the partials are folded by one dispatch each of the sum kernel: dweight
// (inner K * C), then dbias (inner C) when present; count = batch * n_chunks slots in order.
struct SumPlan {
  int count;
  long inner;
};
inline SumPlan dweight_sum(const dfk::ConvParams& p) {
  return {p.batch * p.n_chunks, (long)p.width * p.channels};
}
inline SumPlan dbias_sum(const dfk::ConvParams& p) { return {p.batch * p.n_chunks, (long)p.channels}; }
inline const char* sum_kernel() { return "dfnet4_causal_conv_sum_f32"; }
inline Size3 sum_grid(const SumPlan& s) { return {(unsigned long)s.inner, 1, 1}; }
inline Size3 sum_group(const SumPlan& s) { return {group_width(s.inner), 1, 1}; }

// Buffer indices of the kernels (metal/causal_conv.metal).
enum ForwardBuffer { kFwdX, kFwdWindow, kFwdWeight, kFwdBias, kFwdY, kFwdNewWindow, kFwdParams };
enum BackwardBuffer {
  kBwdX, kBwdWindow, kBwdWeight, kBwdBias, kBwdDy, kBwdDnewWindow,
  kBwdDx, kBwdDwindow, kBwdDwPart, kBwdDbPart, kBwdParams,
};

}  // namespace dfnet4::conv_launch
