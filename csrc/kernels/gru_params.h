// Per-dispatch parameters of the GRU Metal step kernels. Plain ints only and no includes, so the
// host launch plan (csrc/gru_launch.h) can use it before the emulator's <metal_stdlib> is read.
#pragma once

namespace dfk {

// Metal work split (an enum: usable by host C++ and MSL alike, no address space needed).
enum GruMetalShape {
  kGruBatchPerSimd = 8,     // forward: a SIMD group does up to 8 batch rows of one hidden unit
  kGruBackwardThreads = 64  // backward: threads per threadgroup, one per hidden unit
};

struct GruStepParams {
  int B;  // batch
  int T;  // time steps
  int H;  // hidden units
  int t;  // the step this dispatch computes
};

}  // namespace dfk
