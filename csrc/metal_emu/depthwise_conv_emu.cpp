// Emulated-Metal harness of the depthwise frequency conv: compiles metal/depthwise_conv.metal as C++
// against metal/emu and runs it with the launch plan of eval_gpu (csrc/depthwise_conv_launch.h).
// The tests (tests/test_depthwise_conv_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>

#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "depthwise_conv.metal"
#include "depthwise_conv_launch.h"
#include "emu_end.h"
#include "emu_harness.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::launch_options;
using namespace metal_emu::harness;

namespace {

// big_side (rows, big, C), small (frequencies of the other side), weight (K, C).
dfk::DwParams params(size_t rows, int big, int small, const In& weight, int stride, int pad) {
  if (weight.ndim() != 2 || weight.shape(0) > size_t(dfk::kDwMaxWidth)) {
    throw std::invalid_argument("weight must be (K, C) with K <= 8");
  }
  return dfk::make_dw_params(int(rows), big, small, int(weight.shape(1)), int(weight.shape(0)), stride, pad, 0);
}

void check_3d(const In& a, const char* name) {
  if (a.ndim() != 3) throw std::invalid_argument(std::string(name) + " must be 3-D (rows, freqs, channels)");
}

// gather (big -> small): x (rows, big, C) -> (rows, small, C).
Out gather(In x, In weight, int small, int stride, int pad, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::dw_launch;
  check_3d(x, "x");
  const auto p = params(x.shape(0), int(x.shape(1)), small, weight, stride, pad);
  Buffer out("out", {x.shape(0), size_t(small), x.shape(2)});
  dfk::DwParams pc = p;  // the kernels take `constant DwParams&`, a plain reference here
  dispatch(L::block_grid(p), L::block_group(p), launch_options(order, seed),
      [&](uint3 gid) { dfnet4_dw_gather_f32(x.data(), weight.data(), out.ptr(), pc, gid); });
  return out.release();
}

// scatter (small -> big): x (rows, small, C) -> (rows, big, C).
Out scatter(In x, In weight, int big, int stride, int pad, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::dw_launch;
  check_3d(x, "x");
  const auto p = params(x.shape(0), big, int(x.shape(1)), weight, stride, pad);
  Buffer out("out", {x.shape(0), size_t(big), x.shape(2)});
  dfk::DwParams pc = p;
  dispatch(L::block_grid(p), L::block_group(p), launch_options(order, seed),
      [&](uint3 gid) { dfnet4_dw_scatter_f32(x.data(), weight.data(), out.ptr(), pc, gid); });
  return out.release();
}

// The weight gradient from the two sides: partials, then the fold.
Out weight_grad(In big_side, In small_side, In weight, int stride, int pad, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::dw_launch;
  check_3d(big_side, "big_side");
  check_3d(small_side, "small_side");
  const auto p = params(big_side.shape(0), int(big_side.shape(1)), int(small_side.shape(1)), weight, stride, pad);
  Buffer part("part", {size_t(p.n_blocks), size_t(p.width), size_t(p.channels)});
  Buffer dweight("dweight", {size_t(p.width), size_t(p.channels)});
  const LaunchOptions o = launch_options(order, seed);
  dfk::DwParams pc = p;
  dispatch(L::block_grid(p), L::block_group(p), o,
      [&](uint3 gid) { dfnet4_dw_weight_grad_f32(big_side.data(), small_side.data(), part.ptr(), pc, gid); });
  part.check();
  dispatch(L::fold_grid(p), L::fold_group(p), o, [&](uint3 gid) { dfnet4_dw_fold_f32(part.ptr(), dweight.ptr(), pc, gid.x); });
  return dweight.release();
}

void bind(nb::module_& m) {
  namespace L = dfnet4::dw_launch;
  auto s = m.def_submodule("depthwise_conv",
                           "metal/depthwise_conv.metal run on the emulator with eval_gpu's launch plan");
  s.def("gather", &gather, nb::arg("x"), nb::arg("weight"), nb::arg("small"), nb::arg("stride"), nb::arg("pad"),
        nb::arg("order") = "forward", nb::arg("seed") = 0);
  s.def("scatter", &scatter, nb::arg("x"), nb::arg("weight"), nb::arg("big"), nb::arg("stride"), nb::arg("pad"),
        nb::arg("order") = "forward", nb::arg("seed") = 0);
  s.def("weight_grad", &weight_grad, nb::arg("big_side"), nb::arg("small_side"), nb::arg("weight"),
        nb::arg("stride"), nb::arg("pad"), nb::arg("order") = "forward", nb::arg("seed") = 0);
  s.attr("KERNELS") = nb::make_tuple(L::gather_kernel(), L::scatter_kernel(), L::weight_grad_kernel(),
                                     L::fold_kernel());
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
