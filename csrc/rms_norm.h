// RMSNorm (the math of mx.fast.rms_norm) as two MLX primitives: the forward (y) and its backward,
// built by the forward's vjp. See python/dfnet4/ops/rms_norm.py.
#pragma once

#include <vector>

#include "attributed_primitive.h"
#include "kernels/rms_norm_params.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kRmsNames{"dfnet4.ops.rms_norm", "dfnet4.reference.rms_norm", "rms_norm"};

// Shape parameters of the kernel bodies from x (..., C): every axis but the last folded into rows.
dfk::RmsParams rms_params(const mx::array& x);

// eps tells two instances apart (a double: float32 kernels round it once).
struct RmsAttrs {
  double eps;
  bool operator==(const RmsAttrs&) const = default;
};

// Inputs: x (..., C), weight (C,). Output: y (x's shape). Nothing is saved: the backward
// recomputes each row's scale from x.
class RmsNorm : public AttributedPrimitive<FusedForward, RmsAttrs> {
 public:
  RmsNorm(mx::Stream stream, double eps) : AttributedPrimitive(stream, 0, kRmsNames, {eps}) {}
  DFNET4_EVAL
  DFNET4_VJP
  DFNET4_SHAPES
  DFNET4_NAME(RmsNorm)
};

// Inputs: x, weight, dy. Outputs: dx, dweight.
class RmsNormGrad : public AttributedPrimitive<FusedBackward, RmsAttrs> {
 public:
  RmsNormGrad(mx::Stream stream, double eps) : AttributedPrimitive(stream, 0, kRmsNames, {eps}) {}
  DFNET4_EVAL
  DFNET4_SHAPES
  DFNET4_NAME(RmsNormGrad)
};

// Allocated dweight partials of the backward: (n_blocks, C).
mx::array rms_partials(const dfk::RmsParams& p, mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the inputs
// contiguous and returns y. Same-dtype float32 (or float64 on the CPU) arrays; the Python wrapper
// casts.
mx::array rms_norm(const mx::array& x, const mx::array& weight, double eps, mx::StreamOrDevice s = {});

}  // namespace dfnet4
