// Emulated-Metal harness of the causal conv: compiles metal/causal_conv.metal as C++ against
// metal/emu and runs it with the launch plan of eval_gpu (csrc/causal_conv_launch.h). The tests
// (tests/test_causal_conv1d_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "causal_conv_width.h"
#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "causal_conv.metal"
#include "causal_conv_launch.h"
#include "emu_end.h"
#include "emu_harness.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using namespace metal_emu::harness;

namespace {

dfk::ConvParams params(const In& x, const In& weight, bool has_bias, bool has_window, bool silu) {
  if (x.ndim() != 3 || weight.ndim() != 2) throw std::invalid_argument("x must be 3-D and weight 2-D");
  const int flags = (has_bias ? dfk::kConvHasBias : 0) | (has_window ? dfk::kConvHasWindow : 0) |
                    (silu ? dfk::kConvSilu : 0);
  return dfk::make_conv_params(int(x.shape(0)), int(x.shape(1)), int(x.shape(2)), int(weight.shape(0)), flags);
}

using dfnet4::conv_width::with_width;

nb::tuple forward(In x, In weight, std::optional<In> bias, std::optional<In> window, bool silu,
                  const std::string& order, uint64_t seed) {
  namespace L = dfnet4::conv_launch;
  const auto p = params(x, weight, bias.has_value(), window.has_value(), silu);
  const size_t b = p.batch, l = p.length, c = p.channels, k1 = p.width - 1;
  Buffer y("y", {b, l, c}), new_window("new_window", {b, k1, c});
  const LaunchOptions o = metal_emu::launch_options(order, seed);
  dfk::ConvParams pc = p;  // the kernels take `constant ConvParams&`, a plain reference here
  with_width(p.width, [&]<int K>() {
    dispatch(L::grid(p), L::group(p), o, [&](uint3 gid) {
      dfnet4_causal_conv_fwd<K>(x.data(), opt(window), weight.data(), opt(bias), y.ptr(), new_window.ptr(), pc,
                                gid);
    });
  });
  return nb::make_tuple(y.release(), new_window.release());
}

// Returns (dx, dweight, dwindow, dbias); the last two are None when window or bias is absent.
// Runs the backward kernel, then the sum kernel over each partial.
nb::tuple backward(In x, In weight, std::optional<In> bias, std::optional<In> window, In dy,
                   In dnew_window, bool silu, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::conv_launch;
  const auto p = params(x, weight, bias.has_value(), window.has_value(), silu);
  const size_t b = p.batch, l = p.length, c = p.channels, k = p.width, q = size_t(p.batch) * p.n_chunks;
  Buffer dx("dx", {b, l, c}), dweight("dweight", {k, c}), dwindow("dwindow", {window ? b : 0, k - 1, c}),
      dbias("dbias", {bias ? c : 0});
  // Partials: device memory of eval_gpu (uninitialised there, poisoned here: every slot is written).
  Buffer dw_part("dw_part", {q, k, c}), db_part("db_part", {bias ? q : 0, c});
  const LaunchOptions o = metal_emu::launch_options(order, seed);
  dfk::ConvParams pc = p;
  with_width(p.width, [&]<int K>() {
    dispatch(L::grid(p), L::group(p), o, [&](uint3 gid) {
      dfnet4_causal_conv_bwd<K>(x.data(), opt(window), weight.data(), opt(bias), dy.data(), dnew_window.data(),
                                dx.ptr(), dwindow.ptr(), dw_part.ptr(), db_part.ptr(), pc, gid);
    });
  });
  dw_part.check();
  db_part.check();
  auto fold = [&](Buffer& src, Buffer& dst, const L::SumPlan& plan) {
    int count = plan.count, inner = int(plan.inner);
    dispatch(L::sum_grid(plan), L::sum_group(plan), o, [&](uint3 gid) {
      dfnet4_causal_conv_sum_f32(src.ptr(), dst.ptr(), count, inner, gid.x);
    });
  };
  fold(dw_part, dweight, L::dweight_sum(p));
  if (bias) fold(db_part, dbias, L::dbias_sum(p));
  nb::object none = nb::none();
  return nb::make_tuple(dx.release(), dweight.release(), window ? nb::cast(dwindow.release()) : none,
                        bias ? nb::cast(dbias.release()) : none);
}

void bind(nb::module_& m) {
  auto s = m.def_submodule("causal_conv", "metal/causal_conv.metal run on the emulator with eval_gpu's launch plan");
  s.def("forward", &forward, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(), nb::arg("window").none(),
        nb::arg("silu"), nb::arg("order") = "forward", nb::arg("seed") = 0, "Returns (y, new_window).");
  s.def("backward", &backward, nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(),
        nb::arg("window").none(), nb::arg("dy"), nb::arg("dnew_window"), nb::arg("silu"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "Returns (dx, dweight, dwindow, dbias).");
  s.attr("CHUNK") = int(dfk::kConvChunk);
  s.attr("MAX_WIDTH") = int(dfk::kConvMaxWidth);
  s.def("forward_kernel", &dfnet4::conv_launch::forward_kernel);
  s.def("backward_kernel", &dfnet4::conv_launch::backward_kernel);
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
