// Compressed-spectral-loss primitives: op builder, shapes, vjp and the CPU evaluation. eval_gpu
// lives in spectral_loss_metal.cpp, the CPU loops in spectral_loss_cpu.cpp, the math in
// kernels/spectral_loss.h.
#include "spectral_loss.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <stdexcept>

#include "mlx/backend/cpu/encoder.h"
#include "primitive_util.h"
#include "registry.h"
#include "spectral_loss_cpu.h"

namespace dfnet4 {

namespace {

using util::alloc;
using util::begin_cpu_eval;
using util::shape_str;

[[noreturn]] void bad(const std::string& msg) { util::bad_argument("compressed_spectral_loss", msg); }

bool same_sl(const mx::Primitive& a, const mx::Primitive& b) {
  // MLX compares primitives of the same type only (typeid first), so the casts are safe.
  return dynamic_cast<const FlaggedPrimitive&>(a).flags() == dynamic_cast<const FlaggedPrimitive&>(b).flags() &&
         dynamic_cast<const SlPrimitive&>(a).gamma() == dynamic_cast<const SlPrimitive&>(b).gamma();
}

// The pairs of a complex64 array are its float (re, im) values; a real (..., 2) array holds them
// the same way. launch(float{}) or launch(double{}) by the real dtype.
template <class Launch>
void for_pair_dtype(const mx::array& a, const char* prim, Launch&& launch) {
  if (a.dtype() == mx::float64) {
    launch(double{});
  } else if (a.dtype() == mx::float32 || a.dtype() == mx::complex64) {
    launch(float{});
  } else {
    throw std::runtime_error(std::string(prim) + ": inputs must be complex64, float32 or float64");
  }
}

template <typename T>
const T* pairs(const mx::array& a) { return reinterpret_cast<const T*>(a.data<void>()); }
template <typename T>
T* pairs(mx::array& a) { return reinterpret_cast<T*>(a.data<void>()); }

}  // namespace

mx::Dtype sl_real_dtype(mx::Dtype dtype) { return dtype == mx::float64 ? mx::float64 : mx::float32; }

dfk::SlParams sl_params(const mx::array& pred, int flags) {
  dfk::SlParams p;
  p.pairs = static_cast<int>(pred.dtype() == mx::complex64 ? pred.size() : pred.size() / 2);
  p.n_chunks = (p.pairs + dfk::kSlChunk - 1) / dfk::kSlChunk;
  p.flags = flags;
  return p;
}

mx::array sl_partials(const dfk::SlParams& p, mx::Dtype real) {
  mx::array part(mx::Shape{p.n_chunks, 2}, real, nullptr, std::vector<mx::array>{});
  alloc(part);
  return part;
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> CompressedSpectralLoss::output_shapes(const std::vector<mx::array>&) { return {{}, {}}; }

bool CompressedSpectralLoss::is_equivalent(const mx::Primitive& other) const { return same_sl(*this, other); }

void CompressedSpectralLoss::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = begin_cpu_eval("CompressedSpectralLoss", stream(), inputs, outputs);
  const auto p = sl_params(inputs[0], flags_);
  auto part = sl_partials(p, outputs[0].dtype());  // held until the dispatched task has run
  const double gamma = gamma_;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    sl_cpu::ForwardBuffers<T> f{pairs<T>(inputs[0]), pairs<T>(inputs[1]), part.data<T>(), outputs[0].data<T>(),
                                outputs[1].data<T>()};
    enc.dispatch([p, gamma, f]() { sl_cpu::forward(p, gamma, f); });
  };
  for_pair_dtype(inputs[0], "CompressedSpectralLoss", launch);
  enc.add_temporary(std::move(part));
}

std::vector<mx::array> CompressedSpectralLoss::vjp(const std::vector<mx::array>& primals,
                                                   const std::vector<mx::array>& cotangents,
                                                   const std::vector<int>& argnums,
                                                   const std::vector<mx::array>&) {
  const auto s = stream();
  const auto real = sl_real_dtype(primals[0].dtype());
  int flags = 0;
  for (int arg : argnums) {
    if (arg == 0) flags |= dfk::kSlGradPred;
    else if (arg == 1) flags |= dfk::kSlGradTarget;
    else throw std::logic_error("CompressedSpectralLoss::vjp: unknown argument index");
  }
  std::vector<mx::array> inputs(primals.begin(), primals.end());
  for (int k = 0; k < 2; ++k) inputs.push_back(mx::astype(cotangents[k], real, s));
  auto prim = std::make_shared<CompressedSpectralLossGrad>(s, flags, gamma_);
  auto shapes = prim->output_shapes(inputs);
  const auto dtype = primals[0].dtype();
  auto grads = mx::array::make_arrays(std::move(shapes), std::vector<mx::Dtype>(shapes.size(), dtype), prim,
                                      inputs);
  std::vector<mx::array> result;
  const bool both = (flags & dfk::kSlGradPred) && (flags & dfk::kSlGradTarget);
  for (int arg : argnums) result.push_back(grads[both ? arg : 0]);
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> CompressedSpectralLossGrad::output_shapes(const std::vector<mx::array>& inputs) {
  std::vector<mx::Shape> shapes;
  if (flags_ & dfk::kSlGradPred) shapes.push_back(inputs[0].shape());
  if (flags_ & dfk::kSlGradTarget) shapes.push_back(inputs[1].shape());
  return shapes;
}

bool CompressedSpectralLossGrad::is_equivalent(const mx::Primitive& other) const { return same_sl(*this, other); }

void CompressedSpectralLossGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = begin_cpu_eval("CompressedSpectralLossGrad", stream(), inputs, outputs);
  const auto p = sl_params(inputs[0], flags_);
  const double gamma = gamma_;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    const int at_t = (flags_ & dfk::kSlGradPred) ? 1 : 0;
    sl_cpu::BackwardBuffers<T> g{pairs<T>(inputs[0]), pairs<T>(inputs[1]), inputs[2].data<T>(),
                                 inputs[3].data<T>(),
                                 (flags_ & dfk::kSlGradPred) ? pairs<T>(outputs[0]) : nullptr,
                                 (flags_ & dfk::kSlGradTarget) ? pairs<T>(outputs[at_t]) : nullptr};
    enc.dispatch([p, gamma, g]() { sl_cpu::backward(p, gamma, g); });
  };
  for_pair_dtype(inputs[0], "CompressedSpectralLossGrad", launch);
}

// ---- the op -----------------------------------------------------------------------------------------

std::vector<mx::array> compressed_spectral_loss(const mx::array& pred, const mx::array& target, double gamma,
                                                mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  const auto dtype = pred.dtype();
  if (dtype != mx::complex64 && dtype != mx::float32 && dtype != mx::float64) {
    bad("pred must be complex64, or float32 / float64 with (re, im) on a last axis of 2; "
        "dfnet4.ops.compressed_spectral_loss casts");
  }
  if (target.dtype() != dtype) bad("target must have the same dtype as pred");
  if (target.shape() != pred.shape()) {
    bad("target must have pred's shape " + shape_str(pred) + ", got " + shape_str(target));
  }
  if (dtype != mx::complex64 && (pred.ndim() < 1 || pred.shape(-1) != 2)) {
    bad("a real pred must have shape (..., 2) holding (re, im), got " + shape_str(pred));
  }
  const size_t n = dtype == mx::complex64 ? pred.size() : pred.size() / 2;
  if (n < 1) bad("pred must hold at least one complex value, got shape " + shape_str(pred));
  if (n > 0x7fffffffUL) bad("pred holds more than 2^31 - 1 complex values");
  if (!(gamma > 0 && gamma <= 1)) bad("gamma must be in (0, 1], got " + std::to_string(gamma));
  if (dtype == mx::float64 && s.device.type != mx::Device::cpu) bad("float64 is only supported on the CPU stream");
  std::vector<mx::array> inputs = {mx::contiguous(pred, false, s), mx::contiguous(target, false, s)};
  auto prim = std::make_shared<CompressedSpectralLoss>(s, gamma);
  const auto real = sl_real_dtype(dtype);
  return mx::array::make_arrays({{}, {}}, {real, real}, prim, inputs);
}

// ---- bindings ---------------------------------------------------------------------------------------

static void bind_spectral_loss(nanobind::module_& m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  m.def("compressed_spectral_loss", &compressed_spectral_loss, "pred"_a, "target"_a, "gamma"_a, nb::kw_only(),
        "stream"_a = nb::none(),
        "Fused compressed spectral loss terms (low level: complex64, or float32/float64 (..., 2) arrays). "
        "Returns [mag, cplx]. Use dfnet4.ops.compressed_spectral_loss.");
  m.attr("SPECTRAL_LOSS_CHUNK") = static_cast<int>(dfk::kSlChunk);
}
DFNET4_REGISTER_BINDING(bind_spectral_loss);

}  // namespace dfnet4
