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

using util::ptr;

constexpr util::ArgumentCheck check{"batch_norm"};

}  // namespace

dfk::BnParams bn_params(const mx::array& x, int flags) {
  const int channels = x.shape(-1);
  return dfk::make_bn_params(static_cast<int>(x.size() / channels), channels, flags);
}

std::vector<mx::array> bn_partials(const dfk::BnParams& p, mx::Dtype dtype) {
  return util::work_arrays({{p.n_blocks, p.channels}, {p.n_blocks, p.channels}}, dtype);
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> BatchNormTrain::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& x = inputs[0];
  return {x.shape(), {x.shape(-1)}, {x.shape(-1)}};
}

void BatchNormTrain::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const int c = inputs[0].shape(-1);
  util::check_sizes("BatchNormTrain", inputs, {inputs[0].size(), size_t(c), size_t(c)});
  auto& enc = util::begin_cpu_eval("BatchNormTrain", stream(), inputs, outputs);
  const auto p = bn_params(inputs[0], flags_);
  auto parts = bn_partials(p, inputs[0].dtype());  // held until the dispatched task has run
  const double eps = attrs_.eps;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    bn_cpu::ForwardBuffers<T> f{ptr<T>(inputs[0]), ptr<T>(inputs[1]), ptr<T>(inputs[2]),
                                outputs[0].data<T>(), outputs[1].data<T>(), outputs[2].data<T>(),
                                parts[0].data<T>(), parts[1].data<T>()};
    enc.dispatch([p, eps, f]() { bn_cpu::forward(p, eps, f); });
  };
  util::for_float_dtype(inputs[0], "BatchNormTrain", launch);
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
  for (int k = 0; k < 3; ++k) inputs.push_back(util::cotangent(cotangents[k], dtype, s));
  auto grads = util::apply(std::make_shared<BatchNormTrainGrad>(s, flags_, attrs_.eps), std::move(inputs), dtype);
  std::vector<mx::array> result;
  for (int arg : argnums) {
    if (arg < 0 || arg > 2) throw std::logic_error("BatchNormTrain::vjp: unknown argument index");
    result.push_back(grads[arg]);  // dx, dweight, dbias
  }
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> BatchNormTrainGrad::output_shapes(const std::vector<mx::array>& inputs) {
  return {inputs[0].shape(), inputs[1].shape(), inputs[2].shape()};
}

void BatchNormTrainGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const size_t n = inputs[0].size(), c = inputs[0].shape(-1);
  util::check_sizes("BatchNormTrainGrad", inputs, {n, c, c, c, c, n, c, c});
  auto& enc = util::begin_cpu_eval("BatchNormTrainGrad", stream(), inputs, outputs);
  const auto p = bn_params(inputs[0], flags_);
  auto parts = bn_partials(p, inputs[0].dtype());
  const double eps = attrs_.eps;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    bn_cpu::BackwardBuffers<T> g{ptr<T>(inputs[0]), ptr<T>(inputs[1]), ptr<T>(inputs[2]), ptr<T>(inputs[3]),
                                 ptr<T>(inputs[4]), ptr<T>(inputs[5]), ptr<T>(inputs[6]), ptr<T>(inputs[7]),
                                 outputs[0].data<T>(), outputs[1].data<T>(), outputs[2].data<T>(),
                                 parts[0].data<T>(), parts[1].data<T>()};
    enc.dispatch([p, eps, g]() { bn_cpu::backward(p, eps, g); });
  };
  util::for_float_dtype(inputs[0], "BatchNormTrainGrad", launch);
  enc.add_temporaries(std::move(parts));
}

// ---- the op -----------------------------------------------------------------------------------------

std::vector<mx::array> batch_norm(const mx::array& x, const mx::array& weight, const mx::array& bias,
                                  double eps, bool relu, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  auto in = util::channels_last_norm_inputs(check, x, weight, eps, 2, "values per channel", s);
  if (x.size() / x.shape(-1) < 2) {
    check.bad("training needs more than one value per channel, got x of shape " + util::shape_str(x));
  }
  check.shape("bias", bias, {x.shape(-1)}, "(channels,)");
  in.add("bias", bias);
  return util::apply(std::make_shared<BatchNormTrain>(s, relu ? dfk::kBnRelu : 0, eps), in.arrays(), x.dtype());
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
