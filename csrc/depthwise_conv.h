// Depthwise 1-D convolution along the frequency axis (channels-last) and its transpose, as two MLX
// primitives: the forward and its backward, built by the forward's vjp. See docs/model.md.
#pragma once

#include <vector>

#include "attributed_primitive.h"
#include "kernels/depthwise_conv_params.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kDwNames{"dfnet4.ops.depthwise_conv", "dfnet4.reference.depthwise_conv", "depthwise_conv"};

// The geometry fixed at construction: stride, padding and (transposed) output padding; with the
// flags (dfk::kDw*) it makes two instances equivalent.
struct DwGeometry {
  int stride, pad, output_padding;
  bool operator==(const DwGeometry&) const = default;
  // frequencies on the input side -> on the output side, for a kernel of `width` taps
  int out_size(int in_size, int width, bool transposed) const;
};

// Shape parameters of the kernel bodies from the forward's x (..., F, C) and weight (K, C).
dfk::DwParams dw_params(const mx::array& x, const mx::array& weight, const DwGeometry& g, int flags);

// Inputs: x (..., F, C), weight (K, C). Output: y (..., F', C).
class DepthwiseConv : public AttributedPrimitive<FusedForward, DwGeometry> {
 public:
  DepthwiseConv(mx::Stream stream, int flags, DwGeometry g) : AttributedPrimitive(stream, flags, kDwNames, g) {}
  DFNET4_EVAL
  DFNET4_VJP
  DFNET4_SHAPES
  DFNET4_NAME(DepthwiseConv)
};

// The backward's flags beside dfk::kDwTransposed: which gradients it writes (dx first).
enum DwGradFlags { kDwWantX = 2, kDwWantWeight = 4 };

// Inputs: x, weight, dy. Outputs: dx and/or dweight (DwGradFlags).
class DepthwiseConvGrad : public AttributedPrimitive<FusedBackward, DwGeometry> {
 public:
  DepthwiseConvGrad(mx::Stream stream, int flags, DwGeometry g) : AttributedPrimitive(stream, flags, kDwNames, g) {}
  DFNET4_EVAL
  DFNET4_SHAPES
  DFNET4_NAME(DepthwiseConvGrad)
};

// Allocated weight-gradient partials: one (n_blocks, K, C) array.
std::vector<mx::array> dw_partials(const dfk::DwParams& p, mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the inputs
// contiguous and returns y. Same-dtype float32 (or float64 on the CPU) arrays; the Python wrapper casts.
mx::array depthwise_conv(const mx::array& x, const mx::array& weight, int stride, int pad, bool transposed,
                         int output_padding, mx::StreamOrDevice s = {});

}  // namespace dfnet4
