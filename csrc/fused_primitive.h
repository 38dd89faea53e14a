// What the selective scan's and the causal conv's primitives have in common: one int of flags fixed
// at construction (which optional inputs and outputs exist), equivalence by those flags (for
// mx.compile's common-subexpression pass), and the transforms they refuse, with messages that name
// the public op and its pure-MLX reference.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

struct OpNames {
  const char* op;         // e.g. "dfnet4.ops.selective_scan"
  const char* reference;  // e.g. "dfnet4.reference.selective_scan"
};

class FlaggedPrimitive : public mx::Primitive {
 public:
  FlaggedPrimitive(mx::Stream stream, int flags, OpNames names)
      : mx::Primitive(stream), flags_(flags), names_(names) {}
  // MLX compares primitives of the same type only (typeid first), so the cast is safe.
  bool is_equivalent(const mx::Primitive& other) const override {
    return flags_ == static_cast<const FlaggedPrimitive&>(other).flags_;
  }
  int flags() const { return flags_; }

 protected:
  [[noreturn]] void refuse(const std::string& what) const { throw std::runtime_error(names_.op + what); }
  int flags_;
  OpNames names_;
};

// A forward primitive: its vjp (the derived class's) builds the backward primitive; no jvp, no vmap.
class FusedForward : public FlaggedPrimitive {
 public:
  using FlaggedPrimitive::FlaggedPrimitive;
  std::vector<mx::array> jvp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&) override {
    refuse(std::string(" does not support forward-mode differentiation (jvp); use mx.grad/mx.vjp, or ") +
           names_.reference);
  }
  std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array>&,
                                                           const std::vector<int>&) override {
    refuse(" does not support mx.vmap; it is already batched over its first axis (fold extra axes into the batch)");
  }
};

// A backward primitive: not differentiable again, not mappable.
class FusedBackward : public FlaggedPrimitive {
 public:
  using FlaggedPrimitive::FlaggedPrimitive;
  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&, const std::vector<mx::array>&) override {
    refuse(std::string(": second-order gradients are not supported (the backward primitive has no vjp); use ") +
           names_.reference + " for higher-order derivatives");
  }
  std::vector<mx::array> jvp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&) override {
    refuse(": the backward primitive has no jvp");
  }
  std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array>&,
                                                           const std::vector<int>&) override {
    refuse(": the backward primitive does not support mx.vmap");
  }
};

}  // namespace dfnet4
