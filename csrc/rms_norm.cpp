// RMSNorm primitives: op builder, shapes, vjp and the CPU evaluation. eval_gpu lives in
// rms_norm_metal.cpp, the CPU loops in rms_norm_cpu.cpp, the math in kernels/rms_norm.h.
#include "rms_norm.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>

#include <cmath>
#include <stdexcept>

#include "mlx/backend/cpu/encoder.h"
#include "primitive_util.h"
#include "registry.h"
#include "rms_norm_cpu.h"

namespace dfnet4 {

namespace {

using util::ptr;

constexpr util::ArgumentCheck check{"rms_norm"};

}  // namespace

dfk::RmsParams rms_params(const mx::array& x) {
  const int channels = x.shape(-1);
  return dfk::make_rms_params(static_cast<int>(x.size() / channels), channels);
}

mx::array rms_partials(const dfk::RmsParams& p, mx::Dtype dtype) {
  return util::work_arrays({{p.n_blocks, p.channels}}, dtype)[0];
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> RmsNorm::output_shapes(const std::vector<mx::array>& inputs) {
  return {inputs[0].shape()};
}

void RmsNorm::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const int c = inputs[0].shape(-1);
  util::check_sizes("RmsNorm", inputs, {inputs[0].size(), size_t(c)});
  auto& enc = util::begin_cpu_eval("RmsNorm", stream(), inputs, outputs);
  const auto p = rms_params(inputs[0]);
  const double eps = attrs_.eps;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    rms_cpu::ForwardBuffers<T> f{ptr<T>(inputs[0]), ptr<T>(inputs[1]), outputs[0].data<T>()};
    enc.dispatch([p, eps, f]() { rms_cpu::forward(p, eps, f); });
  };
  util::for_float_dtype(inputs[0], "RmsNorm", launch);
}

std::vector<mx::array> RmsNorm::vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                                    const std::vector<int>& argnums, const std::vector<mx::array>&) {
  const auto s = stream();
  const auto dtype = primals[0].dtype();
  // Backward inputs: x, weight, dy.
  std::vector<mx::array> inputs(primals.begin(), primals.end());
  inputs.push_back(util::cotangent(cotangents[0], dtype, s));
  auto grads = util::apply(std::make_shared<RmsNormGrad>(s, attrs_.eps), std::move(inputs), dtype);
  std::vector<mx::array> result;
  for (int arg : argnums) {
    if (arg < 0 || arg > 1) throw std::logic_error("RmsNorm::vjp: unknown argument index");
    result.push_back(grads[arg]);  // dx, dweight
  }
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> RmsNormGrad::output_shapes(const std::vector<mx::array>& inputs) {
  return {inputs[0].shape(), inputs[1].shape()};
}

void RmsNormGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const size_t n = inputs[0].size(), c = inputs[0].shape(-1);
  util::check_sizes("RmsNormGrad", inputs, {n, c, n});
  auto& enc = util::begin_cpu_eval("RmsNormGrad", stream(), inputs, outputs);
  const auto p = rms_params(inputs[0]);
  auto part = rms_partials(p, inputs[0].dtype());  // held until the dispatched task has run
  const double eps = attrs_.eps;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    rms_cpu::BackwardBuffers<T> g{ptr<T>(inputs[0]), ptr<T>(inputs[1]), ptr<T>(inputs[2]),
                                  outputs[0].data<T>(), outputs[1].data<T>(), part.data<T>()};
    enc.dispatch([p, eps, g]() { rms_cpu::backward(p, eps, g); });
  };
  util::for_float_dtype(inputs[0], "RmsNormGrad", launch);
  enc.add_temporary(std::move(part));
}

// ---- the op -----------------------------------------------------------------------------------------

mx::array rms_norm(const mx::array& x, const mx::array& weight, double eps, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  auto in = util::channels_last_norm_inputs(check, x, weight, eps, 1, "rows", s);
  return util::apply(std::make_shared<RmsNorm>(s, eps), in.arrays(), x.dtype())[0];
}

// ---- bindings ---------------------------------------------------------------------------------------

static void bind_rms_norm(nanobind::module_& m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  m.def("rms_norm", &rms_norm, "x"_a, "weight"_a, "eps"_a, nb::kw_only(), "stream"_a = nb::none(),
        "Fused RMSNorm over the last axis, y = x * rsqrt(mean(x^2) + eps) * weight (low level: "
        "same-dtype float32/float64 arrays). Use dfnet4.ops.rms_norm.");
  m.attr("RMS_NORM_ROWS") = static_cast<int>(dfk::kRmsRows);
}
DFNET4_REGISTER_BINDING(bind_rms_norm);

}  // namespace dfnet4
