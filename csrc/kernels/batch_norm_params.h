// Parameters and flags of the batch-norm kernels (docs/model.md, "Speed"): what the primitive, the
// launch plan and the kernel bodies share. Plain ints and no includes, so host code (and the
// emulated harness, before the emulator's <metal_stdlib>) can include it on its own.
#pragma once

namespace dfk {

enum BnConstants {
  kBnRows = 256,  // rows per block (and per partial-sum slot)
  kBnSpan = 64,   // channels per CPU work item
};

enum BnFlags {
  kBnRelu = 1,
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only).
struct BnParams {
  int rows;      // n: every axis of x but the channels
  int channels;  // C
  int n_blocks;  // ceil(rows / kBnRows)
  int flags;
};

inline BnParams make_bn_params(int rows, int channels, int flags) {
  const BnParams p = {rows, channels, (rows + kBnRows - 1) / kBnRows, flags};
  return p;
}

}  // namespace dfk
