// Depthwise frequency-conv primitives: op builder, shapes, vjp and the CPU evaluation. eval_gpu lives
// in depthwise_conv_metal.cpp, the CPU loops in depthwise_conv_cpu.cpp, the math in
// kernels/depthwise_conv.h.
#include "depthwise_conv.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>

#include <stdexcept>

#include "depthwise_conv_cpu.h"
#include "mlx/backend/cpu/encoder.h"
#include "primitive_util.h"
#include "registry.h"

namespace dfnet4 {

namespace {

using util::ptr;

constexpr util::ArgumentCheck check{"depthwise_conv"};

}  // namespace

int DwGeometry::out_size(int in_size, int width, bool transposed) const {
  if (transposed) return (in_size - 1) * stride - 2 * pad + width + output_padding;
  return (in_size + 2 * pad - width) / stride + 1;
}

dfk::DwParams dw_params(const mx::array& x, const mx::array& weight, const DwGeometry& g, int flags) {
  const bool transposed = flags & dfk::kDwTransposed;
  const int c = x.shape(-1), k = weight.shape(0), f = x.shape(-2);
  const int rows = static_cast<int>(x.size() / (static_cast<size_t>(f) * c));
  const int big = transposed ? g.out_size(f, k, true) : f;
  const int small = transposed ? f : g.out_size(f, k, false);
  return dfk::make_dw_params(rows, big, small, c, k, g.stride, g.pad, flags & dfk::kDwTransposed);
}

std::vector<mx::array> dw_partials(const dfk::DwParams& p, mx::Dtype dtype) {
  return util::work_arrays({{p.n_blocks, p.width, p.channels}}, dtype);
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> DepthwiseConv::output_shapes(const std::vector<mx::array>& inputs) {
  auto shape = inputs[0].shape();
  shape[shape.size() - 2] = attrs_.out_size(shape[shape.size() - 2], inputs[1].shape(0), has(dfk::kDwTransposed));
  return {shape};
}

void DepthwiseConv::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  util::check_sizes("DepthwiseConv", inputs, {inputs[0].size(), size_t(inputs[1].shape(0)) * inputs[0].shape(-1)});
  auto& enc = util::begin_cpu_eval("DepthwiseConv", stream(), inputs, outputs);
  const auto p = dw_params(inputs[0], inputs[1], attrs_, flags_);
  auto launch = [&](auto zero) {
    using T = decltype(zero);
    const T *x = ptr<T>(inputs[0]), *w = ptr<T>(inputs[1]);
    T* y = outputs[0].data<T>();
    if (p.flags & dfk::kDwTransposed) {
      enc.dispatch([p, x, w, y]() { dw_cpu::scatter(p, x, w, y); });
    } else {
      enc.dispatch([p, x, w, y]() { dw_cpu::gather(p, x, w, y); });
    }
  };
  util::for_float_dtype(inputs[0], "DepthwiseConv", launch);
}

std::vector<mx::array> DepthwiseConv::vjp(const std::vector<mx::array>& primals,
                                          const std::vector<mx::array>& cotangents,
                                          const std::vector<int>& argnums,
                                          const std::vector<mx::array>&) {
  const auto s = stream();
  const auto dtype = primals[0].dtype();
  int flags = flags_;
  for (int arg : argnums) {
    if (arg == 0) flags |= kDwWantX;
    else if (arg == 1) flags |= kDwWantWeight;
    else throw std::logic_error("DepthwiseConv::vjp: unknown argument index");
  }
  std::vector<mx::array> inputs(primals.begin(), primals.end());
  inputs.push_back(util::cotangent(cotangents[0], dtype, s));
  auto grads = util::apply(std::make_shared<DepthwiseConvGrad>(s, flags, attrs_), std::move(inputs), dtype);
  std::vector<mx::array> result;
  for (int arg : argnums) result.push_back(grads[(flags & kDwWantX) ? arg : 0]);
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> DepthwiseConvGrad::output_shapes(const std::vector<mx::array>& inputs) {
  std::vector<mx::Shape> shapes;
  if (has(kDwWantX)) shapes.push_back(inputs[0].shape());
  if (has(kDwWantWeight)) shapes.push_back(inputs[1].shape());
  return shapes;
}

void DepthwiseConvGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const auto p = dw_params(inputs[0], inputs[1], attrs_, flags_);
  const bool transposed = has(dfk::kDwTransposed);
  const size_t out_size = size_t(p.rows) * (transposed ? p.big : p.small) * p.channels;
  util::check_sizes("DepthwiseConvGrad", inputs, {inputs[0].size(), size_t(p.width) * p.channels, out_size});
  auto& enc = util::begin_cpu_eval("DepthwiseConvGrad", stream(), inputs, outputs);
  const bool want_x = has(kDwWantX), want_w = has(kDwWantWeight);
  std::vector<mx::array> parts;
  if (want_w) parts = dw_partials(p, inputs[0].dtype());  // held until the dispatched task has run

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    const T *x = ptr<T>(inputs[0]), *w = ptr<T>(inputs[1]), *dy = ptr<T>(inputs[2]);
    T* dx = want_x ? outputs[0].data<T>() : nullptr;
    T* dw = want_w ? outputs[want_x ? 1 : 0].data<T>() : nullptr;
    T* part = want_w ? parts[0].data<T>() : nullptr;
    enc.dispatch([p, x, w, dy, dx, dw, part, transposed]() {
      // the input gradient is the other map; the weight gradient pairs the big and small sides
      if (dx) transposed ? dw_cpu::gather(p, dy, w, dx) : dw_cpu::scatter(p, dy, w, dx);
      if (dw) transposed ? dw_cpu::weight_grad(p, dy, x, part, dw) : dw_cpu::weight_grad(p, x, dy, part, dw);
    });
  };
  util::for_float_dtype(inputs[0], "DepthwiseConvGrad", launch);
  if (!parts.empty()) enc.add_temporaries(std::move(parts));
}

// ---- the op -----------------------------------------------------------------------------------------

mx::array depthwise_conv(const mx::array& x, const mx::array& weight, int stride, int pad, bool transposed,
                         int output_padding, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  using util::shape_str;
  if (x.ndim() < 2) check.bad("x must have shape (..., freqs, channels), got " + shape_str(x));
  if (weight.ndim() != 2) check.bad("weight must have shape (K, channels), got " + shape_str(weight));
  const int f = x.shape(-2), c = x.shape(-1), k = weight.shape(0);
  if (f < 1 || c < 1) check.bad("x must have freqs and channels >= 1, got " + shape_str(x));
  if (k < 1 || k > dfk::kDwMaxWidth) {
    check.bad("weight must have 1 to " + std::to_string(dfk::kDwMaxWidth) + " taps (weight.shape[0]), got " +
              shape_str(weight));
  }
  check.shape("weight", weight, {k, c}, "(K, channels) with x's channels");
  if (stride < 1) check.bad("stride must be >= 1, got " + std::to_string(stride));
  if (pad < 0 || pad >= k) check.bad("padding must be in [0, K), got " + std::to_string(pad));
  if (transposed) {
    if (output_padding < 0 || output_padding >= stride) {
      check.bad("output_padding must be in [0, stride), got " + std::to_string(output_padding));
    }
  } else if (output_padding != 0) {
    check.bad("output_padding is for transposed convolutions only");
  }
  // (with 0 <= output_padding < stride, the strided conv maps a transposed output back to f freqs)
  const DwGeometry g{stride, pad, transposed ? output_padding : 0};
  if (g.out_size(f, k, transposed) < 1) {
    check.bad("x's " + std::to_string(f) + " freqs give no output for this kernel, stride and padding");
  }
  const auto dtype = x.dtype();
  util::check_compute_dtype(check.op, dtype, s);
  util::InputList in(check.op, "x", dtype, s);
  in.add("x", x);
  in.add("weight", weight);
  return util::apply(std::make_shared<DepthwiseConv>(s, transposed ? dfk::kDwTransposed : 0, g), in.arrays(),
                     dtype)[0];
}

// ---- bindings ---------------------------------------------------------------------------------------

static void bind_depthwise_conv(nanobind::module_& m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  m.def("depthwise_conv", &depthwise_conv, "x"_a, "weight"_a, "stride"_a, "padding"_a, "transposed"_a,
        "output_padding"_a, nb::kw_only(), "stream"_a = nb::none(),
        "Depthwise 1-D conv (or its transpose) along axis -2 of channels-last arrays (low level: same-dtype "
        "float32/float64 arrays). Use dfnet4.ops.depthwise_conv.");
  m.attr("DEPTHWISE_CONV_MAX_WIDTH") = static_cast<int>(dfk::kDwMaxWidth);
}
DFNET4_REGISTER_BINDING(bind_depthwise_conv);

}  // namespace dfnet4
