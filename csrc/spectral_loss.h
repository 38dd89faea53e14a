// The compressed spectral loss terms (magnitude and complex MSE of power-law compressed spectra) as
// two MLX primitives: the forward (two means) and its backward, built by the forward's vjp. See
// docs/training.md ("The loss").
#pragma once

#include <vector>

#include "attributed_primitive.h"
#include "kernels/spectral_loss_params.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kSlNames{"dfnet4.ops.compressed_spectral_loss", "dfnet4.reference.compressed_spectral_loss",
                                  "spectral_loss"};

// Shape parameters of the kernel bodies from pred: complex64 (...) or real (..., 2).
dfk::SlParams sl_params(const mx::array& pred, int flags);

// With the flags, gamma tells two instances apart (a double: float32 kernels round it once).
struct SlAttrs {
  double gamma;
  bool operator==(const SlAttrs&) const = default;
};

// Inputs: pred, target (same shape and dtype). Outputs: mag, cplx (0-d, the real dtype).
class CompressedSpectralLoss : public AttributedPrimitive<FusedForward, SlAttrs> {
 public:
  CompressedSpectralLoss(mx::Stream stream, double gamma) : AttributedPrimitive(stream, 0, kSlNames, {gamma}) {}
  DFNET4_EVAL
  DFNET4_VJP
  DFNET4_SHAPES
  DFNET4_NAME(CompressedSpectralLoss)
};

// Inputs: pred, target, dmag, dcplx (0-d cotangents). Outputs: dpred and/or dtarget (flags
// dfk::kSlGrad*), each shaped like its primal.
class CompressedSpectralLossGrad : public AttributedPrimitive<FusedBackward, SlAttrs> {
 public:
  CompressedSpectralLossGrad(mx::Stream stream, int flags, double gamma)
      : AttributedPrimitive(stream, flags, kSlNames, {gamma}) {}
  DFNET4_EVAL
  DFNET4_SHAPES
  DFNET4_NAME(CompressedSpectralLossGrad)
};

// Allocated partials of the forward: one (n_chunks, 2) array in the real dtype.
std::vector<mx::array> sl_partials(const dfk::SlParams& p, mx::Dtype real);

// The real dtype the kernels compute in: float32 for complex64 and float32, float64 for float64.
mx::Dtype sl_real_dtype(mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the inputs
// contiguous and returns {mag, cplx}. pred and target: both complex64 (...), or both float32 / float64
// (CPU only) (..., 2) holding (re, im); the Python wrapper casts.
std::vector<mx::array> compressed_spectral_loss(const mx::array& pred, const mx::array& target, double gamma,
                                                mx::StreamOrDevice s = {});

}  // namespace dfnet4
