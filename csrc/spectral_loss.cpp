// Compressed-spectral-loss primitives: op builder, shapes, vjp and the CPU evaluation. eval_gpu
// lives in spectral_loss_metal.cpp, the CPU loops in spectral_loss_cpu.cpp, the math in
// kernels/spectral_loss.h.
#include "spectral_loss.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <stdexcept>

#include "mlx/backend/cpu/encoder.h"
#include "primitive_util.h"
#include "registry.h"
#include "spectral_loss_cpu.h"

namespace dfnet4 {

namespace {

constexpr util::ArgumentCheck check{"compressed_spectral_loss"};

// The pairs of a complex64 array are its float (re, im) values; a real (..., 2) array holds them
// the same way. The evals pick float or double from an array of the real dtype.
template <typename T>
const T* pairs(const mx::array& a) { return reinterpret_cast<const T*>(a.data<void>()); }
template <typename T>
T* pairs(mx::array& a) { return reinterpret_cast<T*>(a.data<void>()); }

}  // namespace

mx::Dtype sl_real_dtype(mx::Dtype dtype) { return dtype == mx::float64 ? mx::float64 : mx::float32; }

dfk::SlParams sl_params(const mx::array& pred, int flags) {
  const size_t n = pred.dtype() == mx::complex64 ? pred.size() : pred.size() / 2;
  return dfk::make_sl_params(static_cast<int>(n), flags);
}

std::vector<mx::array> sl_partials(const dfk::SlParams& p, mx::Dtype real) {
  return util::work_arrays({{p.n_chunks, 2}}, real);
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> CompressedSpectralLoss::output_shapes(const std::vector<mx::array>&) { return {{}, {}}; }

void CompressedSpectralLoss::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  util::check_sizes("CompressedSpectralLoss", inputs, {inputs[0].size(), inputs[0].size()});
  auto& enc = util::begin_cpu_eval("CompressedSpectralLoss", stream(), inputs, outputs);
  const auto p = sl_params(inputs[0], flags_);
  auto part = sl_partials(p, outputs[0].dtype());  // held until the dispatched task has run
  const double gamma = attrs_.gamma;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    sl_cpu::ForwardBuffers<T> f{pairs<T>(inputs[0]), pairs<T>(inputs[1]), part[0].data<T>(), outputs[0].data<T>(),
                                outputs[1].data<T>()};
    enc.dispatch([p, gamma, f]() { sl_cpu::forward(p, gamma, f); });
  };
  util::for_float_dtype(outputs[0], "CompressedSpectralLoss", launch);  // the loss terms: the real dtype
  enc.add_temporaries(std::move(part));
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
  for (int k = 0; k < 2; ++k) inputs.push_back(util::cotangent(cotangents[k], real, s));
  auto grads = util::apply(std::make_shared<CompressedSpectralLossGrad>(s, flags, attrs_.gamma), std::move(inputs),
                           primals[0].dtype());
  std::vector<mx::array> result;
  const bool both = (flags & dfk::kSlGradPred) && (flags & dfk::kSlGradTarget);
  for (int arg : argnums) result.push_back(grads[both ? arg : 0]);
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> CompressedSpectralLossGrad::output_shapes(const std::vector<mx::array>& inputs) {
  std::vector<mx::Shape> shapes;
  if (has(dfk::kSlGradPred)) shapes.push_back(inputs[0].shape());
  if (has(dfk::kSlGradTarget)) shapes.push_back(inputs[1].shape());
  return shapes;
}

void CompressedSpectralLossGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  util::check_sizes("CompressedSpectralLossGrad", inputs, {inputs[0].size(), inputs[0].size(), 1, 1});
  auto& enc = util::begin_cpu_eval("CompressedSpectralLossGrad", stream(), inputs, outputs);
  const auto p = sl_params(inputs[0], flags_);
  const double gamma = attrs_.gamma;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    const bool want_pred = has(dfk::kSlGradPred), want_target = has(dfk::kSlGradTarget);
    sl_cpu::BackwardBuffers<T> g{pairs<T>(inputs[0]), pairs<T>(inputs[1]), inputs[2].data<T>(), inputs[3].data<T>(),
                                 want_pred ? pairs<T>(outputs[0]) : nullptr,
                                 want_target ? pairs<T>(outputs[want_pred ? 1 : 0]) : nullptr};
    enc.dispatch([p, gamma, g]() { sl_cpu::backward(p, gamma, g); });
  };
  util::for_float_dtype(inputs[2], "CompressedSpectralLossGrad", launch);  // dmag: cast to the real dtype
}

// ---- the op -----------------------------------------------------------------------------------------

std::vector<mx::array> compressed_spectral_loss(const mx::array& pred, const mx::array& target, double gamma,
                                                mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  using util::shape_str;
  const auto dtype = pred.dtype();
  if (dtype != mx::complex64 && dtype != mx::float32 && dtype != mx::float64) {
    check.bad("pred must be complex64, or float32 / float64 with (re, im) on a last axis of 2; "
              "dfnet4.ops.compressed_spectral_loss casts");
  }
  if (target.dtype() != dtype) check.bad("target must have the same dtype as pred");
  if (target.shape() != pred.shape()) {
    check.bad("target must have pred's shape " + shape_str(pred) + ", got " + shape_str(target));
  }
  if (dtype != mx::complex64 && (pred.ndim() < 1 || pred.shape(-1) != 2)) {
    check.bad("a real pred must have shape (..., 2) holding (re, im), got " + shape_str(pred));
  }
  const size_t n = dtype == mx::complex64 ? pred.size() : pred.size() / 2;
  if (n < 1) check.bad("pred must hold at least one complex value, got shape " + shape_str(pred));
  if (n > 0x7fffffffUL) check.bad("pred holds more than 2^31 - 1 complex values");
  if (!(gamma > 0 && gamma <= 1)) check.bad("gamma must be in (0, 1], got " + std::to_string(gamma));
  if (dtype != mx::complex64) util::check_compute_dtype(check.op, dtype, s);
  util::InputList in(check.op, "pred", dtype, s);
  in.add("pred", pred);
  in.add("target", target);
  return util::apply(std::make_shared<CompressedSpectralLoss>(s, gamma), in.arrays(), sl_real_dtype(dtype));
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
