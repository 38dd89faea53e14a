// The fused GRU recurrence as two MLX primitives (forward, backward). The input projection and
// the weight gradients are ordinary MLX ops around them (see gru.cpp and python/dfnet4/ops/gru.py).
#pragma once
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include <optional>

namespace dfnet4 {
namespace mx = mlx::core;

// inputs: gx (B,T,3H) = x Wx^T + b, Wh (3H,H), then bhn (H) if has_bhn, then h0 (B,H) if has_h0;
// one float dtype, row-contiguous. Absent bhn / h0 are zeros (kept out of the graph, so a
// shapeless-compiled graph has no constant whose shape could go stale).
// outputs: hs (B,T,H), gates (B,T,4H) = r, z, n, Wh_n h + bhn per step (saved for the backward).
class GruForward : public mx::Primitive {
 public:
  GruForward(mx::Stream s, bool has_bhn, bool has_h0)
      : mx::Primitive(s), has_bhn_(has_bhn), has_h0_(has_h0) {}
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override;
  void eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::vector<mx::array> jvp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&) override;
  std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array>&,
                                                           const std::vector<int>&) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override;
  const char* name() const override { return "GruForward"; }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  void check_input_sizes(const std::vector<mx::array>& in, const std::vector<mx::array>& out) const;
  bool has_bhn_, has_h0_;
};

// inputs: dhs (B,T,H), gates (B,T,4H), hs (B,T,H), Wh (3H,H), then h0 (B,H) if has_h0.
// outputs: dgx (B,T,3H) gradient of gx; dgh (B,T,3H) gradient of Wh h (+ bhn on the n third);
// dh0 (B,H).
class GruBackward : public mx::Primitive {
 public:
  GruBackward(mx::Stream s, bool has_h0) : mx::Primitive(s), has_h0_(has_h0) {}
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override;
  void eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&, const std::vector<mx::array>&) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override;
  const char* name() const override { return "GruBackward"; }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  void check_input_sizes(const std::vector<mx::array>& in) const;
  bool has_h0_;
};

// Op builders (validate shapes and dtypes, make inputs contiguous, build the primitive).
std::vector<mx::array> gru_forward(const mx::array& gx, const mx::array& Wh,
                                   const std::optional<mx::array>& bhn,
                                   const std::optional<mx::array>& h0, mx::StreamOrDevice s = {});
std::vector<mx::array> gru_backward(const mx::array& dhs, const mx::array& gates,
                                    const mx::array& hs, const mx::array& Wh,
                                    const std::optional<mx::array>& h0, mx::StreamOrDevice s = {});

}  // namespace dfnet4
