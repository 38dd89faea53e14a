// Emulated-Metal harness of the RMSNorm: compiles metal/rms_norm.metal as C++ against metal/emu and
// runs it with the launch plan of eval_gpu (csrc/rms_norm_launch.h). The tests
// (tests/test_rms_norm_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/stl/string.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "rms_norm.metal"
#include "rms_norm_launch.h"
#include "emu_end.h"
#include "emu_harness.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::launch_options;
using metal_emu::ThreadPos;
using namespace metal_emu::harness;

namespace {

// x: (rows, channels), rows >= 1 (eval_gpu dispatches no row kernel without rows).
dfk::RmsParams params(const In& x) {
  if (x.ndim() != 2 || x.shape(0) < 1 || x.shape(1) < 1) {
    throw std::invalid_argument("x must be 2-D (rows, channels) with rows, channels >= 1");
  }
  return dfk::make_rms_params(int(x.shape(0)), int(x.shape(1)));
}

Out forward(In x, In weight, float eps, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::rms_launch;
  const auto p = params(x);
  Buffer y("y", {size_t(p.rows), size_t(p.channels)});
  const LaunchOptions o = launch_options(order, seed);
  dfk::RmsParams pc = p;  // the kernels take `constant RmsParams&`, a plain reference here
  metal_emu::dispatch_threads(u3(L::forward_grid(p)), u3(L::forward_group(p)), o,
                              [&](const ThreadPos& t, void* const*) {
                                dfnet4_rms_forward_f32(x.data(), weight.data(), y.ptr(), pc, eps,
                                                       t.thread_position_in_grid, t.thread_index_in_simdgroup,
                                                       t.threads_per_simdgroup);
                              });
  return y.release();
}

nb::tuple backward(In x, In weight, In dy, float eps, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::rms_launch;
  const auto p = params(x);
  const size_t rows = p.rows, c = p.channels, blocks = p.n_blocks;
  Buffer dx("dx", {rows, c}), dweight("dweight", {c}), part("part", {blocks, c});
  const LaunchOptions o = launch_options(order, seed);
  dfk::RmsParams pc = p;
  metal_emu::dispatch_threads(u3(L::backward_grid(p)), u3(L::backward_group(p)), o,
                              [&](const ThreadPos& t, void* const*) {
                                dfnet4_rms_backward_f32(x.data(), weight.data(), dy.data(), dx.ptr(), part.ptr(), pc,
                                                        eps, t.thread_position_in_grid, t.thread_index_in_simdgroup,
                                                        t.threads_per_simdgroup);
                              });
  part.check();
  dispatch(L::channel_grid(p), L::channel_group(p), o,
           [&](uint3 gid) { dfnet4_rms_dweight_fold_f32(part.ptr(), dweight.ptr(), pc, gid.x); });
  return nb::make_tuple(dx.release(), dweight.release());
}

void bind(nb::module_& m) {
  namespace L = dfnet4::rms_launch;
  auto s = m.def_submodule("rms_norm", "metal/rms_norm.metal run on the emulator with eval_gpu's launch plan");
  s.def("forward", &forward, nb::arg("x"), nb::arg("weight"), nb::arg("eps"), nb::arg("order") = "forward",
        nb::arg("seed") = 0, "x (rows, channels). Returns y.");
  s.def("backward", &backward, nb::arg("x"), nb::arg("weight"), nb::arg("dy"), nb::arg("eps"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "Returns (dx, dweight).");
  s.attr("ROWS") = int(dfk::kRmsRows);
  s.attr("KERNELS") = nb::make_tuple(L::forward_kernel(), L::backward_kernel(), L::fold_kernel());
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
