// Parameters and flags of the depthwise frequency-conv kernels (docs/model.md, "Speed"): what the
// primitive, the launch plan and the kernel bodies share. Plain ints and no includes, so host code
// (and the emulated harness, before the emulator's <metal_stdlib>) can include it on its own.
#pragma once

namespace dfk {

enum DwConstants {
  kDwRows = 8,      // rows per work item (and per weight-gradient partial)
  kDwSpan = 64,     // channels per CPU work item
  kDwMaxWidth = 8,  // largest K
};

enum DwFlags {
  kDwTransposed = 1,  // the forward is `scatter` (small -> big)
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only).
struct DwParams {
  int rows;
  int big;       // frequencies on the gather's input side
  int small;     // frequencies on the gather's output side
  int channels;  // C
  int width;     // K
  int stride;
  int pad;
  int n_blocks;  // ceil(rows / kDwRows)
  int flags;
};

inline DwParams make_dw_params(int rows, int big, int small, int channels, int width, int stride, int pad,
                               int flags) {
  const DwParams p = {rows, big, small, channels, width, stride, pad, (rows + kDwRows - 1) / kDwRows, flags};
  return p;
}

}  // namespace dfk
