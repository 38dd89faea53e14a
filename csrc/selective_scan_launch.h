// Metal launch plan of the selective scan, shared by eval_gpu (selective_scan_metal.cpp) and the
// emulated-Metal harness (metal_emu/selective_scan_emu.cpp) so both run exactly the same grids.
#pragma once

#include <string>

#include "kernels/selective_scan.h"

namespace dfnet4::scan_launch {

struct Size3 {
  unsigned long x, y, z;
};

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
inline Size3 forward_group(const dfk::ScanParams&) { return {dfk::kScanBlock, 1, 1}; }

// Backward: one SIMD-group (32 lanes = 32 channels) per threadgroup, channels padded to whole
// blocks so every lane of a group exists for simd_sum.
inline Size3 backward_grid(const dfk::ScanParams& p) {
  return {(unsigned long)p.n_blocks * dfk::kScanBlock, (unsigned long)p.batch, 1};
}
inline Size3 backward_group(const dfk::ScanParams&) { return {dfk::kScanBlock, 1, 1}; }

// Recompute scratch of the backward: sah and sa, kScanChunk * MAXN floats per grid thread each.
inline unsigned long backward_scratch_elements(const dfk::ScanParams& p) {
  const Size3 g = backward_grid(p);
  return (unsigned long)dfk::kScanChunk * variant(p.state).max_state * g.x * g.y;
}

// Buffer indices of the kernels (metal/selective_scan.metal).
enum ForwardBuffer {
  kFwdU, kFwdDelta, kFwdA, kFwdB, kFwdC, kFwdD, kFwdZ, kFwdBias, kFwdH0,
  kFwdOut, kFwdLast, kFwdCkpt, kFwdParams,
};
enum BackwardBuffer {
  kBwdU, kBwdDelta, kBwdA, kBwdB, kBwdC, kBwdD, kBwdZ, kBwdBias, kBwdCkpt, kBwdDout, kBwdDlast,
  kBwdDu, kBwdDdelta, kBwdDz, kBwdDA, kBwdDB, kBwdDC, kBwdDD, kBwdDbias, kBwdDh0,
  kBwdSah, kBwdSa, kBwdParams,
};

}  // namespace dfnet4::scan_launch
