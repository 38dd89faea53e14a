// Op builders, CPU evals, vjp and Python bindings of the fused GRU recurrence.
#include "gru.h"

#include <mlx/backend/cpu/encoder.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <sstream>
#include <stdexcept>

#include "gru_cpu.h"
#include "primitive_util.h"
#include "registry.h"

namespace dfnet4 {
namespace {

std::string shape_str(const mx::Shape& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

void expect_shape(const char* name, const mx::array& a, const mx::Shape& want) {
  if (a.shape() != want)
    throw std::invalid_argument(std::string("gru: ") + name + " has shape " +
                                shape_str(a.shape()) + ", needs " + shape_str(want));
}

GruDims dims_of(const mx::array& hs_like, int H) {
  return GruDims{(int)hs_like.shape(0), (int)hs_like.shape(1), H};
}

}  // namespace

std::vector<mx::array> gru_forward(const mx::array& gx, const mx::array& Wh,
                                   const std::optional<mx::array>& bhn,
                                   const std::optional<mx::array>& h0, mx::StreamOrDevice s) {
  if (gx.ndim() != 3 || gx.shape(2) % 3 != 0)
    throw std::invalid_argument("gru: gx has shape " + shape_str(gx.shape()) +
                                ", needs (batch, time, 3*hidden)");
  const int B = gx.shape(0), T = gx.shape(1), H = gx.shape(2) / 3;
  expect_shape("Wh", Wh, {3 * H, H});
  if (bhn) expect_shape("bhn", *bhn, {H});
  if (h0) expect_shape("h0", *h0, {B, H});
  auto dt = gx.dtype();
  if (dt != mx::float32 && dt != mx::float64)
    throw std::invalid_argument("gru: the recurrence computes in float32 or float64");
  auto st = mx::to_stream(s);
  if (dt == mx::float64 && st.device.type != mx::Device::cpu)
    throw std::invalid_argument("gru: float64 is only supported on the CPU stream (the GPU has no "
                                "double); use float32 or run on mx.cpu");
  std::vector<mx::array> in = {mx::contiguous(gx, false, st)};
  for (const mx::array* a : {&Wh, bhn ? &*bhn : nullptr, h0 ? &*h0 : nullptr}) {
    if (a == nullptr) continue;
    if (a->dtype() != dt) throw std::invalid_argument("gru: all inputs need gx's dtype");
    in.push_back(mx::contiguous(*a, false, st));
  }
  return mx::array::make_arrays({{B, T, H}, {B, T, 4 * H}}, {dt, dt},
                                std::make_shared<GruForward>(st, bhn.has_value(), h0.has_value()),
                                in);
}

std::vector<mx::array> gru_backward(const mx::array& dhs, const mx::array& gates,
                                    const mx::array& hs, const mx::array& Wh,
                                    const std::optional<mx::array>& h0, mx::StreamOrDevice s) {
  if (hs.ndim() != 3) throw std::invalid_argument("gru_backward: hs needs (batch, time, hidden)");
  const int B = hs.shape(0), T = hs.shape(1), H = hs.shape(2);
  expect_shape("dhs", dhs, {B, T, H});
  expect_shape("gates", gates, {B, T, 4 * H});
  expect_shape("Wh", Wh, {3 * H, H});
  if (h0) expect_shape("h0", *h0, {B, H});
  auto dt = hs.dtype();
  auto st = mx::to_stream(s);
  std::vector<mx::array> in;
  for (const mx::array* a : {&dhs, &gates, &hs, &Wh, h0 ? &*h0 : nullptr})
    if (a) in.push_back(mx::contiguous(mx::astype(*a, dt, st), false, st));
  return mx::array::make_arrays({{B, T, 3 * H}, {B, T, 3 * H}, {B, H}}, {dt, dt, dt},
                                std::make_shared<GruBackward>(st, h0.has_value()), in);
}

namespace {

// Under shapeless compilation a graph is replayed with new input shapes without re-running the
// builders above; refuse (rather than read out of bounds) if the inputs no longer agree.
void check_sizes(const char* who, const std::vector<mx::array>& in,
                 const std::vector<size_t>& want) {
  for (size_t i = 0; i < want.size(); ++i)
    if (in[i].size() != want[i])
      throw std::runtime_error(std::string(who) +
                               ": input sizes no longer agree (a shapeless-compiled graph replayed "
                               "with a new hidden size?); recompile for the new shapes");
}

// Absent bhn / h0: a zero buffer owned by the dispatched task.
template <typename T>
std::shared_ptr<std::vector<T>> zeros_if(bool absent, size_t n) {
  return std::make_shared<std::vector<T>>(absent ? n : 0, T(0));
}

}  // namespace

// Both evals (CPU here, Metal in gru_metal.cpp) check the sizes first.
void GruForward::check_input_sizes(const std::vector<mx::array>& in,
                                   const std::vector<mx::array>& out) const {
  const size_t B = out[0].shape(0), T = out[0].shape(1), H = out[0].shape(2);
  std::vector<size_t> want = {B * T * 3 * H, 3 * H * H};
  if (has_bhn_) want.push_back(H);
  if (has_h0_) want.push_back(B * H);
  check_sizes("GruForward", in, want);
}

void GruBackward::check_input_sizes(const std::vector<mx::array>& in) const {
  const size_t B = in[2].shape(0), T = in[2].shape(1), H = in[2].shape(2);
  std::vector<size_t> want = {B * T * H, B * T * 4 * H, B * T * H, 3 * H * H};
  if (has_h0_) want.push_back(B * H);
  check_sizes("GruBackward", in, want);
}

void GruForward::eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  GruDims d = dims_of(out[0], out[0].shape(2));
  const size_t B = d.B, H = d.H;
  check_input_sizes(in, out);
  auto& enc = util::begin_cpu_eval("GruForward", stream(), in, out);
  auto launch = [&](auto tag) {
    using T_ = decltype(tag);
    auto zb = zeros_if<T_>(!has_bhn_, H), zh = zeros_if<T_>(!has_h0_, B * H);
    const T_* bhn = has_bhn_ ? in[2].data<T_>() : zb->data();
    const T_* h0 = has_h0_ ? in[has_bhn_ ? 3 : 2].data<T_>() : zh->data();
    enc.dispatch([d, gx = in[0].data<T_>(), Wh = in[1].data<T_>(), bhn, h0, zb, zh,
                  hs = out[0].data<T_>(), gates = out[1].data<T_>()] {
      gru_forward_cpu<T_>(d, gx, Wh, bhn, h0, hs, gates);
    });
  };
  util::for_float_dtype(in[0], "GruForward", launch);
}

void GruBackward::eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  GruDims d = dims_of(in[2], in[2].shape(2));
  const size_t B = d.B, H = d.H;
  check_input_sizes(in);
  auto& enc = util::begin_cpu_eval("GruBackward", stream(), in, out);
  auto launch = [&](auto tag) {
    using T_ = decltype(tag);
    auto zh = zeros_if<T_>(!has_h0_, B * H);
    const T_* h0 = has_h0_ ? in[4].data<T_>() : zh->data();
    enc.dispatch([d, dhs = in[0].data<T_>(), gates = in[1].data<T_>(), hs = in[2].data<T_>(),
                  Wh = in[3].data<T_>(), h0, zh, dgx = out[0].data<T_>(), dgh = out[1].data<T_>(),
                  dh0 = out[2].data<T_>()] {
      gru_backward_cpu<T_>(d, dhs, gates, hs, h0, Wh, dgx, dgh, dh0);
    });
  };
  util::for_float_dtype(in[0], "GruBackward", launch);
}

// Gradients of gx and h0 come from the backward primitive; those of Wh and bhn are one matmul and
// one sum over all steps. The cotangent of the saved gates is ignored: they are internal and
// never returned by dfnet4.ops.gru.
std::vector<mx::array> GruForward::vjp(const std::vector<mx::array>& primals,
                                       const std::vector<mx::array>& cotangents,
                                       const std::vector<int>& argnums,
                                       const std::vector<mx::array>& outputs) {
  const int bhn_idx = has_bhn_ ? 2 : -1, h0_idx = has_h0_ ? (has_bhn_ ? 3 : 2) : -1;
  const auto &Wh = primals[1], &hs = outputs[0], &gates = outputs[1];
  std::optional<mx::array> h0;
  if (has_h0_) h0 = primals[h0_idx];
  const int B = hs.shape(0), T = hs.shape(1), H = hs.shape(2);
  auto s = stream();
  auto g = gru_backward(cotangents[0], gates, hs, Wh, h0, s);
  std::vector<mx::array> result;
  for (int arg : argnums) {
    if (arg == 0) {
      result.push_back(g[0]);
    } else if (arg == 1) {
      // dWh = sum over (b, t) of dgh_t^T h_{t-1}, h_{-1} = h0 (zeros when absent)
      auto shifted = mx::slice(hs, {0, 0, 0}, {B, T - 1, H}, s);
      auto h_prev = has_h0_ ? mx::concatenate({mx::reshape(*h0, {B, 1, H}, s), shifted}, 1, s)
                            : mx::pad(shifted, {{0, 0}, {1, 0}, {0, 0}}, mx::array(0, hs.dtype()),
                                      "constant", s);
      result.push_back(mx::matmul(mx::transpose(mx::reshape(g[1], {B * T, 3 * H}, s), s),
                                  mx::reshape(h_prev, {B * T, H}, s), s));
    } else if (arg == bhn_idx) {
      result.push_back(mx::sum(mx::slice(g[1], {0, 0, 2 * H}, {B, T, 3 * H}, s), {0, 1}, false, s));
    } else if (arg == h0_idx) {
      result.push_back(g[2]);
    } else {
      throw std::logic_error("GruForward::vjp: unexpected argnum");
    }
  }
  return result;
}

std::vector<mx::array> GruForward::jvp(const std::vector<mx::array>&,
                                       const std::vector<mx::array>&, const std::vector<int>&) {
  throw std::runtime_error("dfnet4.ops.gru: forward-mode differentiation (jvp) is not supported");
}

std::pair<std::vector<mx::array>, std::vector<int>> GruForward::vmap(const std::vector<mx::array>&,
                                                                     const std::vector<int>&) {
  throw std::runtime_error("dfnet4.ops.gru: vmap is not supported; fold the mapped axis into batch");
}

std::vector<mx::array> GruBackward::vjp(const std::vector<mx::array>&,
                                        const std::vector<mx::array>&, const std::vector<int>&,
                                        const std::vector<mx::array>&) {
  throw std::runtime_error("dfnet4.ops.gru: second derivatives are not supported");
}

std::vector<mx::Shape> GruForward::output_shapes(const std::vector<mx::array>& in) {
  const int B = in[0].shape(0), T = in[0].shape(1), H = in[0].shape(2) / 3;
  return {{B, T, H}, {B, T, 4 * H}};
}

std::vector<mx::Shape> GruBackward::output_shapes(const std::vector<mx::array>& in) {
  const int B = in[2].shape(0), T = in[2].shape(1), H = in[2].shape(2);
  return {{B, T, 3 * H}, {B, T, 3 * H}, {B, H}};
}

bool GruForward::is_equivalent(const mx::Primitive& other) const {
  auto* o = dynamic_cast<const GruForward*>(&other);
  return o && o->has_bhn_ == has_bhn_ && o->has_h0_ == has_h0_;
}
bool GruBackward::is_equivalent(const mx::Primitive& other) const {
  auto* o = dynamic_cast<const GruBackward*>(&other);
  return o && o->has_h0_ == has_h0_;
}

namespace {
namespace nb = nanobind;

void bind_gru(nb::module_& m) {
  m.def(
      "gru_forward",
      [](const mx::array& gx, const mx::array& Wh, const std::optional<mx::array>& bhn,
         const std::optional<mx::array>& h0, mx::StreamOrDevice s) {
        auto r = gru_forward(gx, Wh, bhn, h0, s);
        return std::make_tuple(r[0], r[1]);
      },
      nb::arg("gx"), nb::arg("Wh"), nb::arg("bhn").none() = nb::none(),
      nb::arg("h0").none() = nb::none(), nb::kw_only(),
      nb::arg("stream") = nb::none(),
      "GRU recurrence primitive: (hs, gates) from gx = x Wx^T + b. Use dfnet4.ops.gru instead.");
  m.def(
      "gru_backward",
      [](const mx::array& dhs, const mx::array& gates, const mx::array& hs, const mx::array& Wh,
         const std::optional<mx::array>& h0, mx::StreamOrDevice s) {
        auto r = gru_backward(dhs, gates, hs, Wh, h0, s);
        return std::make_tuple(r[0], r[1], r[2]);
      },
      nb::arg("dhs"), nb::arg("gates"), nb::arg("hs"), nb::arg("Wh"),
      nb::arg("h0").none() = nb::none(), nb::kw_only(), nb::arg("stream") = nb::none(),
      "Reverse GRU recurrence primitive: (dgx, dgh, dh0).");
}
DFNET4_REGISTER_BINDING(bind_gru);

}  // namespace
}  // namespace dfnet4
