// Parameters and flags of the compressed-spectral-loss kernels (docs/model.md, "Speed"): what the
// primitive, the launch plan and the kernel bodies share. Plain ints and no includes, so host code
// (and the emulated harness, before the emulator's <metal_stdlib>) can include it on its own.
#pragma once

namespace dfk {

enum SlConstants {
  kSlChunk = 4096,  // pairs per work item (and per partial-sum slot)
  kSlLanes = 16,    // running sums per term within an item
};

enum SlFlags {
  kSlGradPred = 1,    // the backward writes d pred
  kSlGradTarget = 2,  // the backward writes d target
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only).
struct SlParams {
  int pairs;     // N complex values
  int n_chunks;  // ceil(N / kSlChunk)
  int flags;
};

inline SlParams make_sl_params(int pairs, int flags) {
  const SlParams p = {pairs, (pairs + kSlChunk - 1) / kSlChunk, flags};
  return p;
}

}  // namespace dfk
