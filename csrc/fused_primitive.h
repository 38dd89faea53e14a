// The base of every fused primitive (forward and backward of the selective scan, the causal conv,
// the GRU): one int of flags fixed at construction (which optional inputs and outputs exist),
// equivalence by those flags (for mx.compile's common-subexpression pass), the transforms they
// refuse, with messages that name the public op and its pure-MLX reference, and the eval_gpu of a
// build without Metal. docs/architecture.md describes how a primitive is built.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mlx/primitives.h"

namespace dfnet4 {

namespace mx = mlx::core;

// What the messages name, and where the op's Metal kernels are (metal/<library>.metal).
struct OpNames {
  const char* op;         // e.g. "dfnet4.ops.selective_scan"
  const char* reference;  // e.g. "dfnet4.reference.selective_scan"
  const char* library;    // e.g. "selective_scan"
};

class FlaggedPrimitive : public mx::Primitive {
 public:
  FlaggedPrimitive(mx::Stream stream, int flags, OpNames names)
      : mx::Primitive(stream), flags_(flags), names_(names) {}
  // MLX compares primitives of the same type only (typeid first), so the cast is safe.
  bool is_equivalent(const mx::Primitive& other) const override {
    const auto& o = static_cast<const FlaggedPrimitive&>(other);
    return flags_ == o.flags_ && same_attributes(o);
  }
  int flags() const { return flags_; }
  bool has(int flag) const { return (flags_ & flag) != 0; }

#ifndef _METAL_
  // A build without GPU kernels (Linux, CUDA builds of MLX; the Metal ones are built on macOS
  // only): say so and how to run on the CPU. Metal builds: each primitive's <op>_metal.cpp.
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error(std::string(names_.op) +
                             ": this build of dfnet4 has no GPU kernels (they are built on macOS "
                             "with MLX's Metal backend only); run it on the CPU: "
                             "`with mx.stream(mx.cpu): ...` or mx.set_default_device(mx.cpu)");
  }
#endif

 protected:
  // Attributes besides the flags that make two instances compute different things (a primitive
  // with, say, an epsilon overrides this); `other` has this one's type.
  virtual bool same_attributes(const FlaggedPrimitive& /*other*/) const { return true; }
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
    refuse(std::string(": second-order gradients are not supported (no second derivatives: the backward "
                       "primitive has no vjp); use ") +
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

// The members a fused primitive declares, as MLX's DEFINE_* macros in mlx/primitives.h do for its
// own: every primitive has DFNET4_EVAL (eval_cpu, and eval_gpu in Metal builds), DFNET4_SHAPES and
// DFNET4_NAME; a forward primitive also DFNET4_VJP (it builds the backward primitive).
#define DFNET4_EVAL_CPU \
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
#ifdef _METAL_
#define DFNET4_EVAL                                                                                  \
  DFNET4_EVAL_CPU                                                                                    \
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
#else
#define DFNET4_EVAL DFNET4_EVAL_CPU
#endif
#define DFNET4_VJP                                                                                   \
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,                                  \
                             const std::vector<mx::array>& cotangents, const std::vector<int>& argnums, \
                             const std::vector<mx::array>& outputs) override;
#define DFNET4_SHAPES std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
#define DFNET4_NAME(NAME) \
  const char* name() const override { return #NAME; }
