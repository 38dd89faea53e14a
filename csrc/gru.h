// The fused GRU recurrence as two MLX primitives (forward, backward). The input projection and
// the weight gradients are ordinary MLX ops around them (see gru.cpp and python/dfnet4/ops/gru.py).
// See docs/gru.md.
#pragma once

#include <optional>
#include <vector>

#include "fused_primitive.h"
#include "kernels/gru_params.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

inline constexpr OpNames kGruNames{"dfnet4.ops.gru", "dfnet4.reference.gru", "gru"};

// Positions of the optional inputs in the forward's input list, from the flags (dfk::kGru*).
// The fixed ones are gx, Wh = 0, 1.
struct GruInputs {
  int bhn = -1, h0 = -1;
  explicit GruInputs(int flags);
};

// Inputs: gx (B,T,3H) = x Wx^T + b, Wh (3H,H), then bhn (H) and h0 (B,H) when flagged; one float
// dtype, row-contiguous. Absent bhn / h0 are zeros (kept out of the graph, so a shapeless-compiled
// graph has no constant whose shape could go stale).
// Outputs: hs (B,T,H), gates (B,T,4H) = r, z, n, Wh_n h + bhn per step (saved for the backward).
class GruForward : public FusedForward {
 public:
  GruForward(mx::Stream stream, int flags) : FusedForward(stream, flags, kGruNames) {}
  DFNET4_EVAL
  DFNET4_VJP
  DFNET4_SHAPES
  DFNET4_NAME(GruForward)

  // Both evals check first that the inputs still fit together (shapeless replay).
  void check_input_sizes(const std::vector<mx::array>& in, const std::vector<mx::array>& out) const;
};

// Inputs: dhs (B,T,H), gates (B,T,4H), hs (B,T,H), Wh (3H,H), then h0 (B,H) when flagged
// (dfk::kGruHasH0). Outputs: dgx (B,T,3H) gradient of gx; dgh (B,T,3H) gradient of Wh h (+ bhn on
// the n third); dh0 (B,H).
class GruBackward : public FusedBackward {
 public:
  GruBackward(mx::Stream stream, int flags) : FusedBackward(stream, flags, kGruNames) {}
  DFNET4_EVAL
  DFNET4_SHAPES
  DFNET4_NAME(GruBackward)

  void check_input_sizes(const std::vector<mx::array>& in) const;
};

// Op builders (validate shapes and dtypes, make inputs contiguous, build the primitive).
std::vector<mx::array> gru_forward(const mx::array& gx, const mx::array& Wh,
                                   const std::optional<mx::array>& bhn,
                                   const std::optional<mx::array>& h0, mx::StreamOrDevice s = {});
std::vector<mx::array> gru_backward(const mx::array& dhs, const mx::array& gates,
                                    const mx::array& hs, const mx::array& Wh,
                                    const std::optional<mx::array>& h0, mx::StreamOrDevice s = {});

}  // namespace dfnet4
