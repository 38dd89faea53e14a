// The fused selective scan as two MLX primitives: the forward (out, last_state, checkpoints) and
// its backward, built by the forward's vjp. See docs/selective-scan.md.
#pragma once

#include <optional>
#include <vector>

#include "fused_primitive.h"
#include "kernels/selective_scan_params.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kScanNames{"dfnet4.ops.selective_scan", "dfnet4.reference.selective_scan",
                                    "selective_scan"};

// Positions of the optional inputs in a primitive's input list, from the flags
// (dfk::kScanHas*). The fixed ones are u, delta, A, B, C = 0..4.
struct ScanInputs {
  int D = -1, z = -1, bias = -1, h0 = -1, next = 5;
  explicit ScanInputs(int flags, bool with_h0 = true);
};

// Shape parameters of the kernel bodies from the (contiguous) u and A.
dfk::ScanParams scan_params(const mx::array& u, const mx::array& A, int flags);

// Inputs: u, delta, A, B, C, then D, z, bias, h0 when flagged.
// Outputs: out (batch, time, channels), last_state (batch, channels, state),
//          checkpoints (batch, ceil(time / kScanChunk), state, channels) for the backward.
class SelectiveScan : public FusedForward {
 public:
  SelectiveScan(mx::Stream stream, int flags) : FusedForward(stream, flags, kScanNames) {}
  DFNET4_EVAL
  DFNET4_VJP
  DFNET4_SHAPES
  DFNET4_NAME(SelectiveScan)
};

// Inputs: u, delta, A, B, C, then D, z, bias when flagged, then checkpoints, dout, dlast.
// Outputs: du, ddelta, dA, dB, dC, dh0, then dz, dD, dbias when flagged (each shaped like its
// primal), then with kScanBwdOut the forward's out, re-formed from the recomputed states. The
// kernel writes per-block/per-batch partials of dA, dB, dC, dD, dbias into temporaries that a
// second pass folds (done here rather than with mx.sum, which crashes under
// mx.compile(shapeless=True) when a summed axis turns to size 1 in MLX 0.32.4).
class SelectiveScanGrad : public FusedBackward {
 public:
  SelectiveScanGrad(mx::Stream stream, int flags) : FusedBackward(stream, flags, kScanNames) {}
  DFNET4_EVAL
  DFNET4_SHAPES
  DFNET4_NAME(SelectiveScanGrad)

  // Output positions of the optional gradients (-1 when absent).
  struct Outputs {
    int dz = -1, dD = -1, dbias = -1, out = -1;
    explicit Outputs(int flags);
  };
};

// Allocated partial buffers of the backward kernel, in the order dA (batch, channels, state),
// dB, dC (batch, channel blocks, time, state), then dD, dbias (batch, channels) when flagged.
std::vector<mx::array> scan_grad_partials(const dfk::ScanParams& p, mx::Dtype dtype);

// The op: checks shapes/dtypes (std::invalid_argument, i.e. ValueError in Python), makes the
// inputs contiguous and returns {out, last_state}. All arrays must share one floating dtype
// (float32, or float64 on the CPU); the Python wrapper casts.
std::vector<mx::array> selective_scan(const mx::array& u, const mx::array& delta,
                                      const mx::array& A, const mx::array& B, const mx::array& C,
                                      const std::optional<mx::array>& D,
                                      const std::optional<mx::array>& z,
                                      const std::optional<mx::array>& delta_bias,
                                      bool delta_softplus, const std::optional<mx::array>& h0,
                                      mx::StreamOrDevice s = {});

// selective_scan's forward with all three outputs {out, last_state, checkpoints}, for a caller that
// keeps the checkpoints and runs the backward itself (the recomputing Mamba block).
std::vector<mx::array> selective_scan_checkpointed(const mx::array& u, const mx::array& delta,
                                                   const mx::array& A, const mx::array& B, const mx::array& C,
                                                   const std::optional<mx::array>& D,
                                                   const std::optional<mx::array>& z,
                                                   const std::optional<mx::array>& delta_bias,
                                                   bool delta_softplus, const std::optional<mx::array>& h0,
                                                   mx::StreamOrDevice s = {});

// The backward from those checkpoints and the cotangents of out and last_state: SelectiveScanGrad's
// outputs, the last being out again (what the forward returned, to rounding), so that the caller
// needs neither to keep out nor to run the forward again. Not differentiable.
std::vector<mx::array> selective_scan_backward(const mx::array& u, const mx::array& delta,
                                               const mx::array& A, const mx::array& B, const mx::array& C,
                                               const std::optional<mx::array>& D,
                                               const std::optional<mx::array>& z,
                                               const std::optional<mx::array>& delta_bias, bool delta_softplus,
                                               const mx::array& checkpoints, const mx::array& dout,
                                               const mx::array& dlast, mx::StreamOrDevice s = {});

}  // namespace dfnet4
