// Parameters of the RMSNorm kernels: what the primitive, the launch plan and the kernel bodies
// share. Plain ints and no includes, so host code (and the emulated harness, before the emulator's
// <metal_stdlib>) can include it on its own.
#pragma once

namespace dfk {

enum RmsConstants {
  kRmsRows = 32,   // rows per block: one dweight partial slot, one CPU work item
  kRmsWidth = 16,  // CPU: neighbouring channels per chunk (one lane each, a vector register of floats)
  kRmsSimd = 32,   // Metal: threads per row (one SIMD group; lane l takes channels l, l + 32, ...)
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only).
struct RmsParams {
  int rows;      // every axis of x but the last
  int channels;  // C, the normalised axis
  int n_blocks;  // ceil(rows / kRmsRows)
};

inline RmsParams make_rms_params(int rows, int channels) {
  const RmsParams p = {rows, channels, (rows + kRmsRows - 1) / kRmsRows};
  return p;
}

}  // namespace dfk
