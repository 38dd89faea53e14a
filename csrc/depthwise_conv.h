// Depthwise 1-D convolution along the frequency axis (channels-last) and its transpose, as two MLX
// primitives: the forward and its backward, built by the forward's vjp. See docs/model.md.
#pragma once

#include <vector>

#include "fused_primitive.h"
#include "kernels/depthwise_conv.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kDwNames{"dfnet4.ops.depthwise_conv", "dfnet4.reference.depthwise_conv"};

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

class DwPrimitive {
 public:
  explicit DwPrimitive(DwGeometry g) : geometry_(g) {}
  const DwGeometry& geometry() const { return geometry_; }

 protected:
  DwGeometry geometry_;
};

// Inputs: x (..., F, C), weight (K, C). Output: y (..., F', C).
class DepthwiseConv : public FusedForward, public DwPrimitive {
 public:
  DepthwiseConv(mx::Stream stream, int flags, DwGeometry g) : FusedForward(stream, flags, kDwNames), DwPrimitive(g) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  bool is_equivalent(const mx::Primitive& other) const override;
  const char* name() const override { return "DepthwiseConv"; }
};

// Inputs: x, weight, dy. Outputs: dx and dweight.
class DepthwiseConvGrad : public FusedBackward, public DwPrimitive {
 public:
  DepthwiseConvGrad(mx::Stream stream, int flags, DwGeometry g)
      : FusedBackward(stream, flags, kDwNames), DwPrimitive(g) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  bool is_equivalent(const mx::Primitive& other) const override;
  const char* name() const override { return "DepthwiseConvGrad"; }
};

// Allocated weight-gradient partials: (n_blocks, K, C).
mx::array dw_partials(const dfk::DwParams& p, mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the inputs
// contiguous and returns y. Same-dtype float32 (or float64 on the CPU) arrays; the Python wrapper casts.
mx::array depthwise_conv(const mx::array& x, const mx::array& weight, int stride, int pad, bool transposed,
                         int output_padding, mx::StreamOrDevice s = {});

}  // namespace dfnet4
