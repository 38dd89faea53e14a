// Training-mode batch normalisation (+ ReLU) as two MLX primitives: the forward (y, mean, var) and
// its backward, built by the forward's vjp. See docs/model.md ("Speed").
#pragma once

#include <vector>

#include "attributed_primitive.h"
#include "kernels/batch_norm_params.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kBnNames{"dfnet4.ops.batch_norm", "dfnet4.reference.batch_norm", "batch_norm"};

// Shape parameters of the kernel bodies from x (..., C): every axis but the last folded into rows.
dfk::BnParams bn_params(const mx::array& x, int flags);

// With the flags, eps tells two instances apart (a double: float32 kernels round it once).
struct BnAttrs {
  double eps;
  bool operator==(const BnAttrs&) const = default;
};

// Inputs: x (..., C), weight (C,), bias (C,). Outputs: y (x's shape), mean (C,), var (C,) (biased).
// Nothing else is saved: the backward recomputes the ReLU's mask from x.
class BatchNormTrain : public AttributedPrimitive<FusedForward, BnAttrs> {
 public:
  BatchNormTrain(mx::Stream stream, int flags, double eps) : AttributedPrimitive(stream, flags, kBnNames, {eps}) {}
  DFNET4_EVAL
  DFNET4_VJP
  DFNET4_SHAPES
  DFNET4_NAME(BatchNormTrain)
};

// Inputs: x, weight, bias, mean, var (the forward's outputs), dy, dmean, dvar (the cotangents).
// Outputs: dx, dweight, dbias.
class BatchNormTrainGrad : public AttributedPrimitive<FusedBackward, BnAttrs> {
 public:
  BatchNormTrainGrad(mx::Stream stream, int flags, double eps)
      : AttributedPrimitive(stream, flags, kBnNames, {eps}) {}
  DFNET4_EVAL
  DFNET4_SHAPES
  DFNET4_NAME(BatchNormTrainGrad)
};

// Allocated partials of passes 1: two (n_blocks, C) arrays.
std::vector<mx::array> bn_partials(const dfk::BnParams& p, mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the inputs
// contiguous and returns {y, mean, var}. Same-dtype float32 (or float64 on the CPU) arrays; the
// Python wrapper casts.
std::vector<mx::array> batch_norm(const mx::array& x, const mx::array& weight, const mx::array& bias,
                                  double eps, bool relu, mx::StreamOrDevice s = {});

}  // namespace dfnet4
