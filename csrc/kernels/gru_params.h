// Parameters and flags of the GRU recurrence kernels (docs/gru.md): what the primitives, the launch
// plan and the kernel bodies share. Plain ints and no includes, so host code (and the emulated
// harness, before the emulator's <metal_stdlib>) can include it on its own.
#pragma once

namespace dfk {

// Which optional inputs a primitive has (absent ones are zeros, kept out of the graph).
enum GruFlags {
  kGruHasBhn = 1,  // forward: the n gate's hidden bias
  kGruHasH0 = 2,   // forward and backward: the initial state
};

// Metal work split (an enum: usable by host C++ and MSL alike, no address space needed).
enum GruMetalShape {
  kGruBatchPerSimd = 8,     // forward: a SIMD group does up to 8 batch rows of one hidden unit
  kGruBackwardThreads = 64  // backward: threads per threadgroup, one per hidden unit
};

// Per-dispatch parameters of the Metal step kernels.
struct GruStepParams {
  int B;  // batch
  int T;  // time steps
  int H;  // hidden units
  int t;  // the step this dispatch computes
};

}  // namespace dfk
