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

using util::alloc;
using util::begin_cpu_eval;
using util::for_float_dtype;
using util::ptr;
using util::shape_str;

[[noreturn]] void bad(const std::string& msg) { util::bad_argument("depthwise_conv", msg); }

bool same_dw(const mx::Primitive& a, const mx::Primitive& b) {
  // MLX compares primitives of the same type only (typeid first), so the casts are safe.
  return dynamic_cast<const FlaggedPrimitive&>(a).flags() == dynamic_cast<const FlaggedPrimitive&>(b).flags() &&
         dynamic_cast<const DwPrimitive&>(a).geometry() == dynamic_cast<const DwPrimitive&>(b).geometry();
}

enum GradFlags { kWantX = 2, kWantWeight = 4 };  // beside dfk::kDwTransposed = 1

}  // namespace

int DwGeometry::out_size(int in_size, int width, bool transposed) const {
  if (transposed) return (in_size - 1) * stride - 2 * pad + width + output_padding;
  return (in_size + 2 * pad - width) / stride + 1;
}

dfk::DwParams dw_params(const mx::array& x, const mx::array& weight, const DwGeometry& g, int flags) {
  dfk::DwParams p;
  const bool transposed = flags & dfk::kDwTransposed;
  p.channels = x.shape(-1);
  p.width = weight.shape(0);
  const int f = x.shape(-2);
  p.big = transposed ? g.out_size(f, p.width, true) : f;
  p.small = transposed ? f : g.out_size(f, p.width, false);
  p.rows = static_cast<int>(x.size() / (static_cast<size_t>(f) * p.channels));
  p.stride = g.stride;
  p.pad = g.pad;
  p.n_blocks = (p.rows + dfk::kDwRows - 1) / dfk::kDwRows;
  p.flags = flags & dfk::kDwTransposed;
  return p;
}

mx::array dw_partials(const dfk::DwParams& p, mx::Dtype dtype) {
  mx::array part(mx::Shape{p.n_blocks, p.width, p.channels}, dtype, nullptr, std::vector<mx::array>{});
  alloc(part);
  return part;
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> DepthwiseConv::output_shapes(const std::vector<mx::array>& inputs) {
  auto shape = inputs[0].shape();
  shape[shape.size() - 2] =
      geometry_.out_size(shape[shape.size() - 2], inputs[1].shape(0), flags_ & dfk::kDwTransposed);
  return {shape};
}

bool DepthwiseConv::is_equivalent(const mx::Primitive& other) const { return same_dw(*this, other); }

void DepthwiseConv::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = begin_cpu_eval("DepthwiseConv", stream(), inputs, outputs);
  const auto p = dw_params(inputs[0], inputs[1], geometry_, flags_);
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
  for_float_dtype(inputs[0], "DepthwiseConv", launch);
}

std::vector<mx::array> DepthwiseConv::vjp(const std::vector<mx::array>& primals,
                                          const std::vector<mx::array>& cotangents,
                                          const std::vector<int>& argnums,
                                          const std::vector<mx::array>&) {
  const auto s = stream();
  const auto dtype = primals[0].dtype();
  int flags = flags_;
  for (int arg : argnums) {
    if (arg == 0) flags |= kWantX;
    else if (arg == 1) flags |= kWantWeight;
    else throw std::logic_error("DepthwiseConv::vjp: unknown argument index");
  }
  std::vector<mx::array> inputs(primals.begin(), primals.end());
  inputs.push_back(mx::contiguous(mx::astype(cotangents[0], dtype, s), false, s));
  auto prim = std::make_shared<DepthwiseConvGrad>(s, flags, geometry_);
  auto shapes = prim->output_shapes(inputs);
  auto grads = mx::array::make_arrays(std::move(shapes), std::vector<mx::Dtype>(shapes.size(), dtype), prim,
                                      inputs);
  std::vector<mx::array> result;
  for (int arg : argnums) result.push_back(grads[(flags & kWantX) ? arg : 0]);
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> DepthwiseConvGrad::output_shapes(const std::vector<mx::array>& inputs) {
  std::vector<mx::Shape> shapes;
  if (flags_ & kWantX) shapes.push_back(inputs[0].shape());
  if (flags_ & kWantWeight) shapes.push_back(inputs[1].shape());
  return shapes;
}

bool DepthwiseConvGrad::is_equivalent(const mx::Primitive& other) const { return same_dw(*this, other); }

void DepthwiseConvGrad::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = begin_cpu_eval("DepthwiseConvGrad", stream(), inputs, outputs);
  const auto p = dw_params(inputs[0], inputs[1], geometry_, flags_);
  const bool want_x = flags_ & kWantX, want_w = flags_ & kWantWeight;
  std::vector<mx::array> parts;
  if (want_w) parts.push_back(dw_partials(p, inputs[0].dtype()));  // held until the task has run

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    const T *x = ptr<T>(inputs[0]), *w = ptr<T>(inputs[1]), *dy = ptr<T>(inputs[2]);
    T* dx = want_x ? outputs[0].data<T>() : nullptr;
    T* dw = want_w ? outputs[want_x ? 1 : 0].data<T>() : nullptr;
    T* part = want_w ? parts[0].data<T>() : nullptr;
    const bool transposed = p.flags & dfk::kDwTransposed;
    enc.dispatch([p, x, w, dy, dx, dw, part, transposed]() {
      // the input gradient is the other map; the weight gradient pairs the big and small sides
      if (dx) transposed ? dw_cpu::gather(p, dy, w, dx) : dw_cpu::scatter(p, dy, w, dx);
      if (dw) transposed ? dw_cpu::weight_grad(p, dy, x, part, dw) : dw_cpu::weight_grad(p, x, dy, part, dw);
    });
  };
  for_float_dtype(inputs[0], "DepthwiseConvGrad", launch);
  if (!parts.empty()) enc.add_temporaries(std::move(parts));
}

// ---- the op -----------------------------------------------------------------------------------------

mx::array depthwise_conv(const mx::array& x, const mx::array& weight, int stride, int pad, bool transposed,
                         int output_padding, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  if (x.ndim() < 2) bad("x must have shape (..., freqs, channels), got " + shape_str(x));
  if (weight.ndim() != 2) bad("weight must have shape (K, channels), got " + shape_str(weight));
  const int f = x.shape(-2), c = x.shape(-1), k = weight.shape(0);
  if (f < 1 || c < 1) bad("x must have freqs and channels >= 1, got " + shape_str(x));
  if (k < 1 || k > dfk::kDwMaxWidth) {
    bad("weight must have 1 to " + std::to_string(dfk::kDwMaxWidth) + " taps (weight.shape[0]), got " +
        shape_str(weight));
  }
  util::expect_shape("depthwise_conv", "weight", weight, {k, c}, "(K, channels) with x's channels");
  if (stride < 1) bad("stride must be >= 1, got " + std::to_string(stride));
  if (pad < 0 || pad >= k) bad("padding must be in [0, K), got " + std::to_string(pad));
  if (transposed) {
    if (output_padding < 0 || output_padding >= stride) {
      bad("output_padding must be in [0, stride), got " + std::to_string(output_padding));
    }
  } else if (output_padding != 0) {
    bad("output_padding is for transposed convolutions only");
  }
  const DwGeometry g{stride, pad, transposed ? output_padding : 0};
  const int out = g.out_size(f, k, transposed);
  if (out < 1) bad("x's " + std::to_string(f) + " freqs give no output for this kernel, stride and padding");
  // (with 0 <= output_padding < stride, the strided conv maps a transposed output back to f freqs)
  const auto dtype = x.dtype();
  if (dtype != mx::float32 && dtype != mx::float64) {
    bad("the fused kernels take float32 (or float64 on the CPU); dfnet4.ops.depthwise_conv casts");
  }
  if (weight.dtype() != dtype) bad("weight must have the same dtype as x");
  if (dtype == mx::float64 && s.device.type != mx::Device::cpu) bad("float64 is only supported on the CPU stream");
  std::vector<mx::array> inputs = {mx::contiguous(x, false, s), mx::contiguous(weight, false, s)};
  auto prim = std::make_shared<DepthwiseConv>(s, transposed ? dfk::kDwTransposed : 0, g);
  auto shapes = prim->output_shapes(inputs);
  return mx::array(std::move(shapes[0]), dtype, prim, inputs);
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
