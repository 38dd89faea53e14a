// The compressed spectral loss terms (magnitude and complex MSE of power-law compressed spectra) as
// two MLX primitives: the forward (two means) and its backward, built by the forward's vjp. See
// docs/training.md ("The loss").
#pragma once

#include <vector>

#include "fused_primitive.h"
#include "kernels/spectral_loss.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kSlNames{"dfnet4.ops.compressed_spectral_loss", "dfnet4.reference.compressed_spectral_loss"};

// Shape parameters of the kernel bodies from pred: complex64 (...) or real (..., 2).
dfk::SlParams sl_params(const mx::array& pred, int flags);

// gamma (a double attribute: float32 kernels round it once) is part of equivalence.
class SlPrimitive {
 public:
  explicit SlPrimitive(double gamma) : gamma_(gamma) {}
  double gamma() const { return gamma_; }

 protected:
  double gamma_;
};

// Inputs: pred, target (same shape and dtype). Outputs: mag, cplx (0-d, the real dtype).
class CompressedSpectralLoss : public FusedForward, public SlPrimitive {
 public:
  CompressedSpectralLoss(mx::Stream stream, double gamma)
      : FusedForward(stream, 0, kSlNames), SlPrimitive(gamma) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  bool is_equivalent(const mx::Primitive& other) const override;
  const char* name() const override { return "CompressedSpectralLoss"; }
};

// Inputs: pred, target, dmag, dcplx (0-d cotangents). Outputs: dpred and/or dtarget (flags
// dfk::kSlGrad*), each shaped like its primal.
class CompressedSpectralLossGrad : public FusedBackward, public SlPrimitive {
 public:
  CompressedSpectralLossGrad(mx::Stream stream, int flags, double gamma)
      : FusedBackward(stream, flags, kSlNames), SlPrimitive(gamma) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  bool is_equivalent(const mx::Primitive& other) const override;
  const char* name() const override { return "CompressedSpectralLossGrad"; }
};

// Allocated partials of the forward: (n_chunks, 2) in the real dtype.
mx::array sl_partials(const dfk::SlParams& p, mx::Dtype real);

// The real dtype the kernels compute in: float32 for complex64 and float32, float64 for float64.
mx::Dtype sl_real_dtype(mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the inputs
// contiguous and returns {mag, cplx}. pred and target: both complex64 (...), or both float32 / float64
// (CPU only) (..., 2) holding (re, im); the Python wrapper casts.
std::vector<mx::array> compressed_spectral_loss(const mx::array& pred, const mx::array& target, double gamma,
                                                mx::StreamOrDevice s = {});

}  // namespace dfnet4
