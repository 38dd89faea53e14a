// Causal conv1d primitives: op builder, shapes, vjp and the CPU evaluation. eval_gpu lives in
// causal_conv_metal.cpp, the CPU loops in causal_conv_cpu.cpp, the math in kernels/causal_conv.h.
#include "causal_conv.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <stdexcept>

#include "causal_conv_cpu.h"
#include "mlx/backend/cpu/encoder.h"
#include "primitive_util.h"
#include "registry.h"

namespace dfnet4 {

namespace {

using util::opt_ptr;
using util::ptr;

constexpr util::ArgumentCheck check{"causal_conv1d"};

}  // namespace

ConvInputs::ConvInputs(int flags) {
  if (flags & dfk::kConvHasWindow) window = next++;
  if (flags & dfk::kConvHasBias) bias = next++;
}

dfk::ConvParams conv_params(const mx::array& x, const mx::array& weight, int flags) {
  return dfk::make_conv_params(x.shape(0), x.shape(1), x.shape(2), weight.shape(0), flags);
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> CausalConv1d::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& x = inputs[0];
  return {x.shape(), {x.shape(0), inputs[1].shape(0) - 1, x.shape(2)}};
}

void CausalConv1d::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = util::begin_cpu_eval("CausalConv1d", stream(), inputs, outputs);
  const auto p = conv_params(inputs[0], inputs[1], flags_);
  const ConvInputs at(flags_);

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    conv_cpu::ForwardBuffers<T> f{ptr<T>(inputs[0]), opt_ptr<T>(inputs, at.window), ptr<T>(inputs[1]),
                                  opt_ptr<T>(inputs, at.bias), outputs[0].data<T>(), outputs[1].data<T>()};
    enc.dispatch([p, f]() { conv_cpu::forward(p, f); });
  };
  util::for_float_dtype(inputs[0], "CausalConv1d", launch);
}

std::vector<mx::array> CausalConv1d::vjp(const std::vector<mx::array>& primals,
                                         const std::vector<mx::array>& cotangents,
                                         const std::vector<int>& argnums,
                                         const std::vector<mx::array>&) {
  const ConvInputs at(flags_);
  const auto s = stream();
  const auto dtype = primals[0].dtype();
  // Backward inputs: the forward's inputs, then the cotangents of y and new_window (zeros when
  // unused; the latter is tiny).
  std::vector<mx::array> inputs(primals.begin(), primals.end());
  for (int k = 0; k < 2; ++k) inputs.push_back(util::cotangent(cotangents[k], dtype, s));
  auto grads = util::apply(std::make_shared<CausalConv1dGrad>(s, flags_), std::move(inputs), dtype);
  const CausalConv1dGrad::Outputs out_at(flags_);
  std::vector<mx::array> result;
  for (int arg : argnums) {
    if (arg == 0 || arg == 1) result.push_back(grads[arg]);  // dx, dweight
    else if (arg == at.window) result.push_back(grads[out_at.dwindow]);
    else if (arg == at.bias) result.push_back(grads[out_at.dbias]);
    else throw std::logic_error("CausalConv1d::vjp: unknown argument index");
  }
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

CausalConv1dGrad::Outputs::Outputs(int flags) {
  int next = 2;
  if (flags & dfk::kConvHasWindow) dwindow = next++;
  if (flags & dfk::kConvHasBias) dbias = next++;
}

std::vector<mx::Shape> CausalConv1dGrad::output_shapes(const std::vector<mx::array>& inputs) {
  const ConvInputs at(flags_);
  std::vector<mx::Shape> shapes = {inputs[0].shape(), inputs[1].shape()};
  if (at.window >= 0) shapes.push_back(inputs[at.window].shape());
  if (at.bias >= 0) shapes.push_back(inputs[at.bias].shape());
  return shapes;
}

std::vector<mx::array> conv_grad_partials(const dfk::ConvParams& p, mx::Dtype dtype) {
  const int q = p.batch * p.n_chunks;
  std::vector<mx::Shape> shapes = {{q, p.width, p.channels}};
  if (p.flags & dfk::kConvHasBias) shapes.push_back({q, p.channels});
  return util::work_arrays(shapes, dtype);
}

void CausalConv1dGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = util::begin_cpu_eval("CausalConv1dGrad", stream(), inputs, outputs);
  const auto p = conv_params(inputs[0], inputs[1], flags_);
  const ConvInputs at(flags_);
  const Outputs out_at(flags_);
  const int dy = at.next, dnw = at.next + 1;
  auto parts = conv_grad_partials(p, inputs[0].dtype());  // held until the dispatched task has run

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    auto out_ptr = [&](int idx) { return idx >= 0 ? outputs[idx].data<T>() : nullptr; };
    conv_cpu::BackwardBuffers<T> g{ptr<T>(inputs[0]), opt_ptr<T>(inputs, at.window), ptr<T>(inputs[1]),
                                   opt_ptr<T>(inputs, at.bias), ptr<T>(inputs[dy]), ptr<T>(inputs[dnw]),
                                   out_ptr(0), out_ptr(out_at.dwindow), out_ptr(1), out_ptr(out_at.dbias),
                                   parts[0].data<T>(), parts.size() > 1 ? parts[1].data<T>() : nullptr};
    enc.dispatch([p, g]() { conv_cpu::backward(p, g); });
  };
  util::for_float_dtype(inputs[0], "CausalConv1dGrad", launch);
  enc.add_temporaries(std::move(parts));
}

// ---- the op -----------------------------------------------------------------------------------------

std::vector<mx::array> causal_conv1d(const mx::array& x, const mx::array& weight,
                                     const std::optional<mx::array>& bias,
                                     const std::optional<mx::array>& window, bool silu,
                                     mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  using util::shape_str;
  if (x.ndim() != 3) check.bad("x must have shape (batch, time, channels), got " + shape_str(x));
  if (weight.ndim() != 2) check.bad("weight must have shape (K, channels), got " + shape_str(weight));
  const int b = x.shape(0), l = x.shape(1), c = x.shape(2), k = weight.shape(0);
  if (b < 1 || l < 1 || c < 1) check.bad("x must have batch, time and channels >= 1, got " + shape_str(x));
  if (k < 1 || k > dfk::kConvMaxWidth) {
    check.bad("weight must have 1 to " + std::to_string(dfk::kConvMaxWidth) + " taps (weight.shape[0]), got " +
              shape_str(weight));
  }
  check.shape("weight", weight, {k, c}, "(K, channels) with x's channels");
  if (bias) check.shape("bias", *bias, {c}, "(channels,)");
  if (window) check.shape("window", *window, {b, k - 1, c}, "(batch, K-1, channels)");
  const auto dtype = x.dtype();
  util::check_compute_dtype(check.op, dtype, s);

  int flags = silu ? dfk::kConvSilu : 0;
  util::InputList in(check.op, "x", dtype, s);
  in.add("x", x);
  in.add("weight", weight);
  if (window && k > 1) { flags |= dfk::kConvHasWindow; in.add("window", *window); }
  if (bias) { flags |= dfk::kConvHasBias; in.add("bias", *bias); }
  return util::apply(std::make_shared<CausalConv1d>(s, flags), in.arrays(), dtype);
}

// ---- bindings ---------------------------------------------------------------------------------------

static void bind_causal_conv1d(nanobind::module_& m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  m.def("causal_conv1d", &causal_conv1d, "x"_a, "weight"_a, "bias"_a.none(), "window"_a.none(), "silu"_a,
        nb::kw_only(), "stream"_a = nb::none(),
        "Fused causal depthwise conv1d (+ SiLU) (low level: same-dtype float32/float64 arrays). "
        "Returns [y, new_window]. Use dfnet4.ops.causal_conv1d.");
  m.attr("CAUSAL_CONV_CHUNK") = static_cast<int>(dfk::kConvChunk);
  m.attr("CAUSAL_CONV_MAX_WIDTH") = static_cast<int>(dfk::kConvMaxWidth);
}
DFNET4_REGISTER_BINDING(bind_causal_conv1d);

}  // namespace dfnet4
