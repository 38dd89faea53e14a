// Batch-norm primitives: op builder, shapes, vjp and the CPU evaluation. eval_gpu lives in
// batch_norm_metal.cpp, the CPU loops in batch_norm_cpu.cpp, the math in kernels/batch_norm.h.
#include "batch_norm.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <stdexcept>

#include "batch_norm_cpu.h"
#include "mlx/backend/cpu/encoder.h"
#include "primitive_util.h"
#include "registry.h"

namespace dfnet4 {

namespace {

using util::alloc;
using util::begin_cpu_eval;
using util::for_float_dtype;
using util::ptr;
using util::shape_str;

[[noreturn]] void bad(const std::string& msg) { util::bad_argument("batch_norm", msg); }

bool same_bn(const mx::Primitive& a, const mx::Primitive& b) {
  // MLX compares primitives of the same type only (typeid first), so the casts are safe.
  const auto& x = dynamic_cast<const FlaggedPrimitive&>(a);
  const auto& y = dynamic_cast<const FlaggedPrimitive&>(b);
  return x.flags() == y.flags() &&
         dynamic_cast<const BnPrimitive&>(a).eps() == dynamic_cast<const BnPrimitive&>(b).eps();
}

}  // namespace

dfk::BnParams bn_params(const mx::array& x, int flags) {
  dfk::BnParams p;
  p.channels = x.shape(-1);
  p.rows = static_cast<int>(x.size() / p.channels);
  p.n_blocks = (p.rows + dfk::kBnRows - 1) / dfk::kBnRows;
  p.flags = flags;
  return p;
}

std::vector<mx::array> bn_partials(const dfk::BnParams& p, mx::Dtype dtype) {
  std::vector<mx::array> parts;
  for (int k = 0; k < 2; ++k) {
    parts.emplace_back(mx::Shape{p.n_blocks, p.channels}, dtype, nullptr, std::vector<mx::array>{});
    alloc(parts.back());
  }
  return parts;
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> BatchNormTrain::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& x = inputs[0];
  return {x.shape(), {x.shape(-1)}, {x.shape(-1)}};
}

bool BatchNormTrain::is_equivalent(const mx::Primitive& other) const { return same_bn(*this, other); }

void BatchNormTrain::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = begin_cpu_eval("BatchNormTrain", stream(), inputs, outputs);
  const auto p = bn_params(inputs[0], flags_);
  auto parts = bn_partials(p, inputs[0].dtype());  // held until the dispatched task has run
  const double eps = eps_;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    bn_cpu::ForwardBuffers<T> f{ptr<T>(inputs[0]), ptr<T>(inputs[1]), ptr<T>(inputs[2]),
                                outputs[0].data<T>(), outputs[1].data<T>(), outputs[2].data<T>(),
                                parts[0].data<T>(), parts[1].data<T>()};
    enc.dispatch([p, eps, f]() { bn_cpu::forward(p, eps, f); });
  };
  for_float_dtype(inputs[0], "BatchNormTrain", launch);
  enc.add_temporaries(std::move(parts));
}

std::vector<mx::array> BatchNormTrain::vjp(const std::vector<mx::array>& primals,
                                           const std::vector<mx::array>& cotangents,
                                           const std::vector<int>& argnums,
                                           const std::vector<mx::array>& outputs) {
  const auto s = stream();
  const auto dtype = primals[0].dtype();
  // Backward inputs: x, weight, bias, mean, var, then the three cotangents (zeros when unused;
  // those of mean and var are (C,)).
  std::vector<mx::array> inputs(primals.begin(), primals.end());
  inputs.push_back(outputs[1]);
  inputs.push_back(outputs[2]);
  for (int k = 0; k < 3; ++k) {
    inputs.push_back(mx::contiguous(mx::astype(cotangents[k], dtype, s), false, s));
  }
  auto prim = std::make_shared<BatchNormTrainGrad>(s, flags_, eps_);
  auto shapes = prim->output_shapes(inputs);
  auto grads = mx::array::make_arrays(std::move(shapes), {dtype, dtype, dtype}, prim, inputs);
  std::vector<mx::array> result;
  for (int arg : argnums) {
    if (arg < 0 || arg > 2) throw std::logic_error("BatchNormTrain::vjp: unknown argument index");
    result.push_back(grads[arg]);
  }
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> BatchNormTrainGrad::output_shapes(const std::vector<mx::array>& inputs) {
  return {inputs[0].shape(), inputs[1].shape(), inputs[2].shape()};
}

bool BatchNormTrainGrad::is_equivalent(const mx::Primitive& other) const { return same_bn(*this, other); }

void BatchNormTrainGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = begin_cpu_eval("BatchNormTrainGrad", stream(), inputs, outputs);
  const auto p = bn_params(inputs[0], flags_);
  auto parts = bn_partials(p, inputs[0].dtype());
  const double eps = eps_;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    bn_cpu::BackwardBuffers<T> g{ptr<T>(inputs[0]), ptr<T>(inputs[1]), ptr<T>(inputs[2]), ptr<T>(inputs[3]),
                                 ptr<T>(inputs[4]), ptr<T>(inputs[5]), ptr<T>(inputs[6]), ptr<T>(inputs[7]),
                                 outputs[0].data<T>(), outputs[1].data<T>(), outputs[2].data<T>(),
                                 parts[0].data<T>(), parts[1].data<T>()};
    enc.dispatch([p, eps, g]() { bn_cpu::backward(p, eps, g); });
  };
  for_float_dtype(inputs[0], "BatchNormTrainGrad", launch);
  enc.add_temporaries(std::move(parts));
}

// ---- the op -----------------------------------------------------------------------------------------

std::vector<mx::array> batch_norm(const mx::array& x, const mx::array& weight, const mx::array& bias,
                                  double eps, bool relu, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  if (x.ndim() < 2) bad("x must have shape (..., channels) with at least 2 dimensions, got " + shape_str(x));
  const int c = x.shape(-1);
  if (c < 1) bad("x must have at least one channel, got " + shape_str(x));
  if (x.size() / c < 2) bad("training needs more than one value per channel, got x of shape " + shape_str(x));
  if (x.size() / c > 0x7fffffffL) bad("x has more than 2^31 - 1 values per channel");
  util::expect_shape("batch_norm", "weight", weight, {c}, "(channels,)");
  util::expect_shape("batch_norm", "bias", bias, {c}, "(channels,)");
  if (!(eps > 0) || !std::isfinite(eps)) bad("eps must be a finite number > 0, got " + std::to_string(eps));
  const auto dtype = x.dtype();
  if (dtype != mx::float32 && dtype != mx::float64) {
    bad("the fused kernels take float32 (or float64 on the CPU); dfnet4.ops.batch_norm casts");
  }
  if (dtype == mx::float64 && s.device.type != mx::Device::cpu) {
    bad("float64 is only supported on the CPU stream");
  }
  std::vector<mx::array> inputs;
  auto add = [&](const char* name, const mx::array& a) {
    if (a.dtype() != dtype) bad(std::string(name) + " must have the same dtype as x");
    inputs.push_back(mx::contiguous(a, false, s));
  };
  add("x", x);
  add("weight", weight);
  add("bias", bias);
  auto prim = std::make_shared<BatchNormTrain>(s, relu ? dfk::kBnRelu : 0, eps);
  auto shapes = prim->output_shapes(inputs);
  return mx::array::make_arrays(std::move(shapes), {dtype, dtype, dtype}, prim, inputs);
}

// ---- bindings ---------------------------------------------------------------------------------------

static void bind_batch_norm(nanobind::module_& m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  m.def("batch_norm", &batch_norm, "x"_a, "weight"_a, "bias"_a, "eps"_a, "relu"_a, nb::kw_only(),
        "stream"_a = nb::none(),
        "Fused training-mode batch norm (+ ReLU) over every axis but the last (low level: same-dtype "
        "float32/float64 arrays). Returns [y, mean, var]. Use dfnet4.ops.batch_norm.");
  m.attr("BATCH_NORM_ROWS") = static_cast<int>(dfk::kBnRows);
}
DFNET4_REGISTER_BINDING(bind_batch_norm);

}  // namespace dfnet4
