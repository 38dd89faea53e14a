// Metal launch plan of the selective scan, shared by eval_gpu (selective_scan_metal.cpp) and the
// emulated-Metal harness (metal_emu/selective_scan_emu.cpp) so both run exactly the same grids.
#pragma once

#include <string>

#include "kernels/selective_scan_params.h"
#include "launch_plan.h"

namespace dfnet4::scan_launch {

using namespace launch;

// Which instantiation of the bodies runs for a given state size (the CPU driver picks the same).
struct Variant {
  int max_state;  // MAXN
  int fixed;      // NFIX (0: runtime state count)
  const char* suffix;
};

inline Variant variant(int state) {
  if (state == 16) return {16, 16, "n16x16"};
  if (state < 16) return {16, 0, "n16"};
  return {dfk::kScanMaxState, 0, "n64"};
}

inline std::string forward_kernel(int state) {
  return std::string("dfnet4_selective_scan_fwd_f32_") + variant(state).suffix;
}
inline std::string backward_kernel(int state) {
  return std::string("dfnet4_selective_scan_bwd_f32_") + variant(state).suffix;
}

// Forward: one thread per (channel, batch); no collectives, so any group width works.
inline Size3 forward_grid(const dfk::ScanParams& p) {
  return {(unsigned long)p.channels, (unsigned long)p.batch, 1};
}
inline Size3 forward_group(const dfk::ScanParams& p) { return {group_width(p.channels), 1, 1}; }

// Backward: channels padded to whole blocks of 32 (one SIMD-group each) so every lane of every
// SIMD-group exists for simd_sum; a threadgroup holds up to 8 such blocks. The grid width is a
// multiple of 32 and so is the group's, so a partial last threadgroup still has whole SIMD-groups.
inline Size3 backward_grid(const dfk::ScanParams& p) {
  return {(unsigned long)p.n_blocks * dfk::kScanBlock, (unsigned long)p.batch, 1};
}
inline Size3 backward_group(const dfk::ScanParams& p) { return {group_width(backward_grid(p).x), 1, 1}; }

// Recompute scratch of the backward: sah and sa, kScanChunk * MAXN floats per grid thread each.
inline unsigned long backward_scratch_elements(const dfk::ScanParams& p) {
  const Size3 g = backward_grid(p);
  return (unsigned long)dfk::kScanChunk * variant(p.state).max_state * g.x * g.y;
}

// After the backward kernel, the partials are folded into the gradients by one dispatch each of
// the sum kernel, in this order: dA, dB, dC, then dD and dbias when present.
// dst[o, j] = sum_k src[o, k, j]: grid (inner, outer), one thread per output element.
struct SumPlan {
  int outer, count;
  long inner;
};
enum SumTarget { kSumDA, kSumDB, kSumDC, kSumDD, kSumDbias, kSumTargets };
inline SumPlan sum_plan(const dfk::ScanParams& p, int target) {
  switch (target) {
    case kSumDA: return {1, p.batch, (long)p.channels * p.state};
    case kSumDB:
    case kSumDC: return {p.batch, p.n_blocks, (long)p.length * p.state};
    default: return {1, p.batch, (long)p.channels};  // dD, dbias
  }
}
inline const char* sum_kernel() { return "dfnet4_selective_scan_sum_f32"; }
inline Size3 sum_grid(const SumPlan& s) { return {(unsigned long)s.inner, (unsigned long)s.outer, 1}; }
inline Size3 sum_group(const SumPlan&) { return {64, 1, 1}; }

// Buffer indices of the kernels (metal/selective_scan.metal).
enum ForwardBuffer {
  kFwdU, kFwdDelta, kFwdA, kFwdB, kFwdC, kFwdD, kFwdZ, kFwdBias, kFwdH0,
  kFwdOut, kFwdLast, kFwdCkpt, kFwdParams,
};
enum BackwardBuffer {
  kBwdU, kBwdDelta, kBwdA, kBwdB, kBwdC, kBwdD, kBwdZ, kBwdBias, kBwdCkpt, kBwdDout, kBwdDlast,
  kBwdDu, kBwdDdelta, kBwdDz, kBwdDA, kBwdDB, kBwdDC, kBwdDD, kBwdDbias, kBwdDh0,
  kBwdSah, kBwdSa, kBwdOut, kBwdParams,
};

}  // namespace dfnet4::scan_launch
