// The fused causal depthwise conv1d (+ SiLU) as two MLX primitives: the forward (y, new_window) and
// its backward, built by the forward's vjp. See docs/causal-conv.md.
#pragma once

#include <optional>
#include <vector>

#include "fused_primitive.h"
#include "kernels/causal_conv_params.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kConvNames{"dfnet4.ops.causal_conv1d", "dfnet4.reference.causal_conv1d",
                                    "causal_conv"};

// Positions of the optional inputs in a primitive's input list, from the flags (dfk::kConv*).
// The fixed ones are x, weight = 0, 1.
struct ConvInputs {
  int window = -1, bias = -1, next = 2;
  explicit ConvInputs(int flags);
};

// Shape parameters of the kernel bodies from the (contiguous) x and weight.
dfk::ConvParams conv_params(const mx::array& x, const mx::array& weight, int flags);

// Inputs: x (batch, time, channels), weight (K, channels), then window (batch, K-1, channels) and
// bias (channels,) when flagged. Outputs: y (batch, time, channels), new_window (batch, K-1, channels).
// Nothing else is saved: the backward recomputes the pre-activation from x.
class CausalConv1d : public FusedForward {
 public:
  CausalConv1d(mx::Stream stream, int flags) : FusedForward(stream, flags, kConvNames) {}
  DFNET4_EVAL
  DFNET4_VJP
  DFNET4_SHAPES
  DFNET4_NAME(CausalConv1d)
};

// Inputs: the forward's inputs, then dy (batch, time, channels) and dnew_window (batch, K-1,
// channels). Outputs: dx, dweight, then dwindow and dbias when flagged (each shaped like its primal).
// One pass over x per work item; dweight/dbias go through per-(batch, chunk) partials folded in a
// fixed order inside the primitive (mx.sum would crash under mx.compile(shapeless=True) when a
// summed axis turns to size 1 in MLX 0.32.4, see selective_scan.h).
class CausalConv1dGrad : public FusedBackward {
 public:
  CausalConv1dGrad(mx::Stream stream, int flags) : FusedBackward(stream, flags, kConvNames) {}
  DFNET4_EVAL
  DFNET4_SHAPES
  DFNET4_NAME(CausalConv1dGrad)

  // Output positions of the optional gradients (-1 when absent).
  struct Outputs {
    int dwindow = -1, dbias = -1;
    explicit Outputs(int flags);
  };
};

// Allocated partials of the backward kernel: dweight (batch * n_chunks, K, C), then dbias
// (batch * n_chunks, C) when flagged.
std::vector<mx::array> conv_grad_partials(const dfk::ConvParams& p, mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the inputs
// contiguous and returns {y, new_window}. All arrays must share one floating dtype (float32, or
// float64 on the CPU); the Python wrapper casts. A window of a K = 1 conv (no rows) is dropped.
std::vector<mx::array> causal_conv1d(const mx::array& x, const mx::array& weight,
                                     const std::optional<mx::array>& bias,
                                     const std::optional<mx::array>& window, bool silu,
                                     mx::StreamOrDevice s = {});

}  // namespace dfnet4
