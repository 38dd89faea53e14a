// Op builders, CPU evals, vjp and Python bindings of the fused GRU recurrence. eval_gpu lives in
// gru_metal.cpp, the CPU loops in gru_cpu.cpp, the math in kernels/gru_{fwd,bwd}.h.
#include "gru.h"

#include <mlx/backend/cpu/encoder.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <stdexcept>
#include <utility>

#include "gru_cpu.h"
#include "primitive_util.h"
#include "registry.h"

namespace dfnet4 {
namespace {

using util::shape_str;

constexpr util::ArgumentCheck check{"gru"};

GruDims dims_of(const mx::array& hs_like) {
  return GruDims{(int)hs_like.shape(0), (int)hs_like.shape(1), (int)hs_like.shape(2)};
}

// Absent bhn / h0: a zero buffer owned by the dispatched task.
template <typename T>
std::shared_ptr<std::vector<T>> zeros_if(bool absent, size_t n) {
  return std::make_shared<std::vector<T>>(absent ? n : 0, T(0));
}

}  // namespace

GruInputs::GruInputs(int flags) {
  int next = 2;
  if (flags & dfk::kGruHasBhn) bhn = next++;
  if (flags & dfk::kGruHasH0) h0 = next++;
}

// ---- the ops ----------------------------------------------------------------------------------------

std::vector<mx::array> gru_forward(const mx::array& gx, const mx::array& Wh,
                                   const std::optional<mx::array>& bhn,
                                   const std::optional<mx::array>& h0, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  if (gx.ndim() != 3 || gx.shape(2) % 3 != 0) {
    check.bad("gx must have shape (batch, time, 3*hidden), got " + shape_str(gx));
  }
  const int B = gx.shape(0), H = gx.shape(2) / 3;
  check.shape("Wh", Wh, {3 * H, H}, "(3*hidden, hidden)");
  if (bhn) check.shape("bhn", *bhn, {H}, "(hidden,)");
  if (h0) check.shape("h0", *h0, {B, H}, "(batch, hidden)");
  util::check_compute_dtype(check.op, gx.dtype(), s);
  int flags = 0;
  util::InputList in(check.op, "gx", gx.dtype(), s);
  in.add("gx", gx);
  in.add("Wh", Wh);
  if (bhn) { flags |= dfk::kGruHasBhn; in.add("bhn", *bhn); }
  if (h0) { flags |= dfk::kGruHasH0; in.add("h0", *h0); }
  return util::apply(std::make_shared<GruForward>(s, flags), in.arrays(), gx.dtype());
}

// The backward's inputs take hs's dtype (the cotangent may come in another).
std::vector<mx::array> gru_backward(const mx::array& dhs, const mx::array& gates,
                                    const mx::array& hs, const mx::array& Wh,
                                    const std::optional<mx::array>& h0, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  if (hs.ndim() != 3) check.bad("hs must have shape (batch, time, hidden), got " + shape_str(hs));
  const int B = hs.shape(0), T = hs.shape(1), H = hs.shape(2);
  check.shape("dhs", dhs, {B, T, H}, "(batch, time, hidden) like hs");
  check.shape("gates", gates, {B, T, 4 * H}, "(batch, time, 4*hidden)");
  check.shape("Wh", Wh, {3 * H, H}, "(3*hidden, hidden)");
  if (h0) check.shape("h0", *h0, {B, H}, "(batch, hidden)");
  const auto dt = hs.dtype();
  util::check_compute_dtype(check.op, dt, s);
  util::InputList in(check.op, "hs", dt, s);
  for (auto [name, a] : {std::pair{"dhs", &dhs}, {"gates", &gates}, {"hs", &hs}, {"Wh", &Wh}}) {
    in.add(name, mx::astype(*a, dt, s));
  }
  if (h0) in.add("h0", mx::astype(*h0, dt, s));
  const int flags = h0 ? dfk::kGruHasH0 : 0;
  return util::apply(std::make_shared<GruBackward>(s, flags), in.arrays(), dt);
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> GruForward::output_shapes(const std::vector<mx::array>& in) {
  const int B = in[0].shape(0), T = in[0].shape(1), H = in[0].shape(2) / 3;
  return {{B, T, H}, {B, T, 4 * H}};
}

void GruForward::check_input_sizes(const std::vector<mx::array>& in, const std::vector<mx::array>& out) const {
  const size_t B = out[0].shape(0), T = out[0].shape(1), H = out[0].shape(2);
  std::vector<size_t> want = {B * T * 3 * H, 3 * H * H};
  if (has(dfk::kGruHasBhn)) want.push_back(H);
  if (has(dfk::kGruHasH0)) want.push_back(B * H);
  util::check_sizes("GruForward", in, want);
}

void GruForward::eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  const GruDims d = dims_of(out[0]);
  check_input_sizes(in, out);
  auto& enc = util::begin_cpu_eval("GruForward", stream(), in, out);
  const GruInputs at(flags_);
  auto launch = [&](auto zero) {
    using T_ = decltype(zero);
    auto zb = zeros_if<T_>(at.bhn < 0, d.H), zh = zeros_if<T_>(at.h0 < 0, (size_t)d.B * d.H);
    const T_* bhn = at.bhn >= 0 ? in[at.bhn].data<T_>() : zb->data();
    const T_* h0 = at.h0 >= 0 ? in[at.h0].data<T_>() : zh->data();
    enc.dispatch([d, gx = in[0].data<T_>(), Wh = in[1].data<T_>(), bhn, h0, zb, zh,
                  hs = out[0].data<T_>(), gates = out[1].data<T_>()] {
      gru_forward_cpu<T_>(d, gx, Wh, bhn, h0, hs, gates);
    });
  };
  util::for_float_dtype(in[0], "GruForward", launch);
}

// Gradients of gx and h0 come from the backward primitive; those of Wh and bhn are one matmul and
// one sum over all steps. The cotangent of the saved gates is ignored: they are internal and
// never returned by dfnet4.ops.gru.
std::vector<mx::array> GruForward::vjp(const std::vector<mx::array>& primals,
                                       const std::vector<mx::array>& cotangents,
                                       const std::vector<int>& argnums,
                                       const std::vector<mx::array>& outputs) {
  const GruInputs at(flags_);
  const auto &Wh = primals[1], &hs = outputs[0], &gates = outputs[1];
  std::optional<mx::array> h0;
  if (at.h0 >= 0) h0 = primals[at.h0];
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
      auto h_prev = h0 ? mx::concatenate({mx::reshape(*h0, {B, 1, H}, s), shifted}, 1, s)
                       : mx::pad(shifted, {{0, 0}, {1, 0}, {0, 0}}, mx::array(0, hs.dtype()), "constant", s);
      result.push_back(mx::matmul(mx::transpose(mx::reshape(g[1], {B * T, 3 * H}, s), s),
                                  mx::reshape(h_prev, {B * T, H}, s), s));
    } else if (arg == at.bhn) {
      result.push_back(mx::sum(mx::slice(g[1], {0, 0, 2 * H}, {B, T, 3 * H}, s), {0, 1}, false, s));
    } else if (arg == at.h0) {
      result.push_back(g[2]);
    } else {
      throw std::logic_error("GruForward::vjp: unexpected argnum");
    }
  }
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

std::vector<mx::Shape> GruBackward::output_shapes(const std::vector<mx::array>& in) {
  const int B = in[2].shape(0), T = in[2].shape(1), H = in[2].shape(2);
  return {{B, T, 3 * H}, {B, T, 3 * H}, {B, H}};
}

void GruBackward::check_input_sizes(const std::vector<mx::array>& in) const {
  const size_t B = in[2].shape(0), T = in[2].shape(1), H = in[2].shape(2);
  std::vector<size_t> want = {B * T * H, B * T * 4 * H, B * T * H, 3 * H * H};
  if (has(dfk::kGruHasH0)) want.push_back(B * H);
  util::check_sizes("GruBackward", in, want);
}

void GruBackward::eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  const GruDims d = dims_of(in[2]);
  check_input_sizes(in);
  auto& enc = util::begin_cpu_eval("GruBackward", stream(), in, out);
  const bool has_h0 = has(dfk::kGruHasH0);
  auto launch = [&](auto zero) {
    using T_ = decltype(zero);
    auto zh = zeros_if<T_>(!has_h0, (size_t)d.B * d.H);
    const T_* h0 = has_h0 ? in[4].data<T_>() : zh->data();
    enc.dispatch([d, dhs = in[0].data<T_>(), gates = in[1].data<T_>(), hs = in[2].data<T_>(),
                  Wh = in[3].data<T_>(), h0, zh, dgx = out[0].data<T_>(), dgh = out[1].data<T_>(),
                  dh0 = out[2].data<T_>()] {
      gru_backward_cpu<T_>(d, dhs, gates, hs, h0, Wh, dgx, dgh, dh0);
    });
  };
  util::for_float_dtype(in[0], "GruBackward", launch);
}

// ---- bindings ---------------------------------------------------------------------------------------

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
