// Per-dispatch parameters of the GRU Metal step kernels. Plain ints only and no includes, so the
// host launch plan (csrc/gru_launch.h) can use it before the emulator's <metal_stdlib> is read.
#pragma once

namespace dfk {

struct GruStepParams {
  int B;  // batch
  int T;  // time steps
  int H;  // hidden units
  int t;  // the step this dispatch computes
};

}  // namespace dfk
