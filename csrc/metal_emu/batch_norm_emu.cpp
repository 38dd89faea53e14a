// Emulated-Metal harness of the batch norm: compiles metal/batch_norm.metal as C++ against metal/emu
// and runs it with the launch plan of eval_gpu (csrc/batch_norm_launch.h). The tests
// (tests/test_batch_norm_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>

#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "batch_norm.metal"
#include "batch_norm_launch.h"
#include "emu_end.h"
#include "emu_harness.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::launch_options;
using namespace metal_emu::harness;

namespace {

// x: (rows, channels).
dfk::BnParams params(const In& x, bool relu) {
  if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, channels)");
  return dfk::make_bn_params(int(x.shape(0)), int(x.shape(1)), relu ? dfk::kBnRelu : 0);
}

nb::tuple forward(In x, In weight, In bias, float eps, bool relu, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::bn_launch;
  const auto p = params(x, relu);
  const size_t rows = p.rows, c = p.channels, blocks = p.n_blocks;
  Buffer y("y", {rows, c}), mean("mean", {c}), var("var", {c});
  Buffer part_mean("part_mean", {blocks, c}), part_m2("part_m2", {blocks, c});
  const LaunchOptions o = launch_options(order, seed);
  dfk::BnParams pc = p;  // the kernels take `constant BnParams&`, a plain reference here
  dispatch(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_stats_f32(x.data(), part_mean.ptr(), part_m2.ptr(), pc, gid);
  });
  part_mean.check();
  part_m2.check();
  dispatch(L::channel_grid(p), L::channel_group(p), o, [&](uint3 gid) {
    dfnet4_bn_combine_f32(part_mean.ptr(), part_m2.ptr(), mean.ptr(), var.ptr(), pc, gid.x);
  });
  dispatch(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_apply_f32(x.data(), weight.data(), bias.data(), mean.ptr(), var.ptr(), y.ptr(), pc, eps, gid);
  });
  return nb::make_tuple(y.release(), mean.release(), var.release());
}

nb::tuple backward(In x, In weight, In bias, In mean, In var, In dy, In dmean, In dvar, float eps, bool relu,
                   const std::string& order, uint64_t seed) {
  namespace L = dfnet4::bn_launch;
  const auto p = params(x, relu);
  const size_t rows = p.rows, c = p.channels, blocks = p.n_blocks;
  Buffer dx("dx", {rows, c}), dweight("dweight", {c}), dbias("dbias", {c});
  Buffer part_g("part_g", {blocks, c}), part_gx("part_gx", {blocks, c});
  const LaunchOptions o = launch_options(order, seed);
  dfk::BnParams pc = p;
  dispatch(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_grad_stats_f32(x.data(), weight.data(), bias.data(), mean.data(), var.data(), dy.data(),
                             part_g.ptr(), part_gx.ptr(), pc, eps, gid);
  });
  part_g.check();
  part_gx.check();
  dispatch(L::channel_grid(p), L::channel_group(p), o, [&](uint3 gid) {
    dfnet4_bn_grad_combine_f32(part_g.ptr(), part_gx.ptr(), var.data(), dweight.ptr(), dbias.ptr(), pc, eps, gid.x);
  });
  dweight.check();
  dbias.check();
  dispatch(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_grad_apply_f32(x.data(), weight.data(), bias.data(), mean.data(), var.data(), dy.data(), dmean.data(),
                             dvar.data(), dweight.ptr(), dbias.ptr(), dx.ptr(), pc, eps, gid);
  });
  return nb::make_tuple(dx.release(), dweight.release(), dbias.release());
}

void bind(nb::module_& m) {
  namespace L = dfnet4::bn_launch;
  auto s = m.def_submodule("batch_norm", "metal/batch_norm.metal run on the emulator with eval_gpu's launch plan");
  s.def("forward", &forward, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps"), nb::arg("relu"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "x (rows, channels). Returns (y, mean, var).");
  s.def("backward", &backward, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("mean"), nb::arg("var"),
        nb::arg("dy"), nb::arg("dmean"), nb::arg("dvar"), nb::arg("eps"), nb::arg("relu"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "Returns (dx, dweight, dbias).");
  s.attr("ROWS") = int(dfk::kBnRows);
  s.attr("KERNELS") = nb::make_tuple(L::stats_kernel(), L::combine_kernel(), L::apply_kernel(),
                                     L::grad_stats_kernel(), L::grad_combine_kernel(), L::grad_apply_kernel());
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
