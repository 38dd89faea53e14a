// Emulated-Metal harness of the batch norm: compiles metal/batch_norm.metal as C++ against metal/emu
// and runs it with the launch plan of eval_gpu (csrc/batch_norm_launch.h). The tests
// (tests/test_batch_norm_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "batch_norm.metal"
#include "batch_norm_launch.h"
#include "emu_end.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::Order;
using metal_emu::ThreadPos;

namespace {

using In = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using Out = nb::ndarray<nb::numpy, float>;

LaunchOptions options(const std::string& order, uint64_t seed) {
  LaunchOptions o;
  if (order == "forward") o.order = Order::Forward;
  else if (order == "reverse") o.order = Order::Reverse;
  else if (order == "shuffled") o.order = Order::Shuffled;
  else throw std::invalid_argument("order must be 'forward', 'reverse' or 'shuffled', got '" + order + "'");
  o.seed = seed;
  return o;
}

// An output or scratch buffer: poisoned and guarded while the kernels run; checked written
// everywhere and nowhere outside before it is read back.
struct Buffer {
  metal_emu::DeviceBuffer<float> device;
  std::vector<size_t> shape;
  Buffer(const char* name, std::vector<size_t> s) : device(name, count(s)), shape(std::move(s)) {}
  static size_t count(const std::vector<size_t>& s) {
    size_t n = 1;
    for (size_t v : s) n *= v;
    return n;
  }
  float* ptr() { return device.data(); }
  void check() const {
    device.check_bounds();
    device.check_written();
  }
  Out release() {
    check();
    auto* data = new std::vector<float>(device.to_vector());
    nb::capsule owner(data, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
    return Out(data->data(), shape.size(), shape.data(), owner);
  }
};

dfk::BnParams params(const In& x, bool relu) {
  if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, channels)");
  dfk::BnParams p;
  p.rows = int(x.shape(0));
  p.channels = int(x.shape(1));
  p.n_blocks = (p.rows + dfk::kBnRows - 1) / dfk::kBnRows;
  p.flags = relu ? dfk::kBnRelu : 0;
  return p;
}

uint3 u3(const dfnet4::bn_launch::Size3& s) { return uint3(uint(s.x), uint(s.y), uint(s.z)); }

// Runs `kernel(gid)` over one of the plan's grids.
template <typename K>
void run(const dfnet4::bn_launch::Size3& grid, const dfnet4::bn_launch::Size3& group, const LaunchOptions& o,
         K&& kernel) {
  metal_emu::dispatch_threads(u3(grid), u3(group), o,
                              [&](const ThreadPos& t, void* const*) { kernel(t.thread_position_in_grid); });
}

nb::tuple forward(In x, In weight, In bias, float eps, bool relu, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::bn_launch;
  const auto p = params(x, relu);
  const size_t rows = p.rows, c = p.channels, nb_ = p.n_blocks;
  Buffer y("y", {rows, c}), mean("mean", {c}), var("var", {c});
  Buffer part_mean("part_mean", {nb_, c}), part_m2("part_m2", {nb_, c});
  const LaunchOptions o = options(order, seed);
  dfk::BnParams pc = p;  // the kernels take `constant BnParams&`, a plain reference here
  run(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_stats_f32(x.data(), part_mean.ptr(), part_m2.ptr(), pc, gid);
  });
  part_mean.check();
  part_m2.check();
  run(L::channel_grid(p), L::channel_group(p), o, [&](uint3 gid) {
    dfnet4_bn_combine_f32(part_mean.ptr(), part_m2.ptr(), mean.ptr(), var.ptr(), pc, gid.x);
  });
  run(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_apply_f32(x.data(), weight.data(), bias.data(), mean.ptr(), var.ptr(), y.ptr(), pc, eps, gid);
  });
  return nb::make_tuple(y.release(), mean.release(), var.release());
}

nb::tuple backward(In x, In weight, In bias, In mean, In var, In dy, In dmean, In dvar, float eps, bool relu,
                   const std::string& order, uint64_t seed) {
  namespace L = dfnet4::bn_launch;
  const auto p = params(x, relu);
  const size_t rows = p.rows, c = p.channels, nb_ = p.n_blocks;
  Buffer dx("dx", {rows, c}), dweight("dweight", {c}), dbias("dbias", {c});
  Buffer part_g("part_g", {nb_, c}), part_gx("part_gx", {nb_, c});
  const LaunchOptions o = options(order, seed);
  dfk::BnParams pc = p;
  run(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_grad_stats_f32(x.data(), weight.data(), bias.data(), mean.data(), var.data(), dy.data(),
                             part_g.ptr(), part_gx.ptr(), pc, eps, gid);
  });
  part_g.check();
  part_gx.check();
  run(L::channel_grid(p), L::channel_group(p), o, [&](uint3 gid) {
    dfnet4_bn_grad_combine_f32(part_g.ptr(), part_gx.ptr(), var.data(), dweight.ptr(), dbias.ptr(), pc, eps, gid.x);
  });
  dweight.check();
  dbias.check();
  run(L::block_grid(p), L::block_group(p), o, [&](uint3 gid) {
    dfnet4_bn_grad_apply_f32(x.data(), weight.data(), bias.data(), mean.data(), var.data(), dy.data(), dmean.data(),
                             dvar.data(), dweight.ptr(), dbias.ptr(), dx.ptr(), pc, eps, gid);
  });
  return nb::make_tuple(dx.release(), dweight.release(), dbias.release());
}

void bind(nb::module_& m) {
  auto s = m.def_submodule("batch_norm", "metal/batch_norm.metal run on the emulator with eval_gpu's launch plan");
  s.def("forward", &forward, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps"), nb::arg("relu"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "x (rows, channels). Returns (y, mean, var).");
  s.def("backward", &backward, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("mean"), nb::arg("var"),
        nb::arg("dy"), nb::arg("dmean"), nb::arg("dvar"), nb::arg("eps"), nb::arg("relu"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "Returns (dx, dweight, dbias).");
  s.attr("ROWS") = int(dfk::kBnRows);
  namespace L = dfnet4::bn_launch;
  s.attr("KERNELS") = nb::make_tuple(L::stats_kernel(), L::combine_kernel(), L::apply_kernel(),
                                     L::grad_stats_kernel(), L::grad_combine_kernel(), L::grad_apply_kernel());
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
