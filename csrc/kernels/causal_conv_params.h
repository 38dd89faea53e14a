// Parameters and flags of the causal-conv kernels (docs/causal-conv.md): what the primitive, the
// launch plan and the kernel bodies share. Plain ints and no includes, so host code (and the
// emulated harness, before the emulator's <metal_stdlib>) can include it on its own.
#pragma once

namespace dfk {

enum ConvConstants {
  kConvChunk = 64,    // time steps per work item (and per partial-sum slot)
  kConvBlock = 64,    // channels per CPU work item
  kConvMaxWidth = 8,  // largest K with a compiled kernel
  kConvPrefetch = 8,  // CPU: rows of x (and dy) requested this many steps ahead
};

enum ConvFlags {
  kConvHasWindow = 1,
  kConvHasBias = 2,
  kConvSilu = 4,
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only).
struct ConvParams {
  int batch;
  int length;    // T
  int channels;  // C
  int width;     // K (the bodies take it as a template argument too)
  int n_chunks;  // ceil(T / kConvChunk)
  int flags;
};

inline ConvParams make_conv_params(int batch, int length, int channels, int width, int flags) {
  const ConvParams p = {batch, length, channels, width, (length + kConvChunk - 1) / kConvChunk, flags};
  return p;
}

}  // namespace dfk
