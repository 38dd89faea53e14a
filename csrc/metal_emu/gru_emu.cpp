// Runs metal/gru.metal (the real wrappers, compiled as C++ against metal/emu) under the emulator,
// with the launch plan of eval_gpu (csrc/gru_launch.h). Tests compare it with the CPU primitive.
#include <mlx/mlx.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu_buffer.h"
#include "gru_launch.h"
#include "registry.h"

// The Metal part: the emulator's <metal_stdlib>, then the real wrappers, then back to host C++.
#include <metal_stdlib>
#include "emu_launch.h"
#include "gru.metal"
#include "emu_end.h"

namespace {
namespace mx = mlx::core;
namespace nb = nanobind;
using metal_emu::ThreadPos;

std::vector<float> host(const mx::array& a) {
  auto c = mx::contiguous(mx::astype(a, mx::float32));
  c.eval();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.size());
}

using Buffer = metal_emu::DeviceBuffer<float>;

// An output after the launches: no write outside it, every element written.
mx::array to_mx(const Buffer& b, mx::Shape shape) {
  b.check_bounds();
  b.check_written();
  auto v = b.to_vector();
  return mx::array(v.begin(), std::move(shape), mx::float32);
}

metal_emu::Order parse_order(const std::string& s) {
  if (s == "forward") return metal_emu::Order::Forward;
  if (s == "reverse") return metal_emu::Order::Reverse;
  if (s == "shuffled") return metal_emu::Order::Shuffled;
  // Appending (not "literal" + string) avoids a GCC 12 -Wrestrict false positive at -O3.
  std::string msg = "order must be 'forward', 'reverse' or 'shuffled', got '";
  throw std::invalid_argument(msg.append(s).append("'"));
}

metal_emu::LaunchOptions options(const std::string& order, uint64_t seed) {
  metal_emu::LaunchOptions o;
  o.order = parse_order(order);
  o.seed = seed;
  return o;
}

uint3 u3(dfnet4::gru_launch::Size3 s) { return uint3{s.x, s.y, s.z}; }

std::tuple<mx::array, mx::array> forward(const mx::array& gx_a, const mx::array& Wh_a,
                                         const mx::array& bhn_a, const mx::array& h0_a,
                                         const std::string& order, uint64_t seed) {
  const int B = gx_a.shape(0), T = gx_a.shape(1), H = gx_a.shape(2) / 3;
  auto gx = host(gx_a), Wh = host(Wh_a), bhn = host(bhn_a), h0 = host(h0_a);
  Buffer hs("hs", (size_t)B * T * H), gates("gates", (size_t)B * T * 4 * H);
  auto opts = options(order, seed);
  dfnet4::gru_launch::forward(B, T, H, [&](const dfnet4::gru_launch::Dispatch& d) {
    if (d.name != "gru_forward_step") throw std::logic_error(std::string("unexpected kernel ").append(d.name));
    dfk::GruStepParams p = d.params;  // `constant` is empty in C++: non-const
    metal_emu::dispatch_threadgroups(
        u3(d.groups), u3(d.threads), opts, [&](const ThreadPos& tp, void* const*) {
          gru_forward_step<float>(gx.data(), Wh.data(), bhn.data(), h0.data(), hs.data(),
                                  gates.data(), p, tp.threadgroup_position_in_grid,
                                  tp.thread_index_in_simdgroup, tp.simdgroup_index_in_threadgroup,
                                  tp.simdgroups_per_threadgroup, tp.threads_per_simdgroup);
        });
  });
  return {to_mx(hs, {B, T, H}), to_mx(gates, {B, T, 4 * H})};
}

std::tuple<mx::array, mx::array, mx::array> backward(const mx::array& dhs_a,
                                                     const mx::array& gates_a,
                                                     const mx::array& hs_a, const mx::array& h0_a,
                                                     const mx::array& Wh_a,
                                                     const std::string& order, uint64_t seed) {
  const int B = hs_a.shape(0), T = hs_a.shape(1), H = hs_a.shape(2);
  auto dhs = host(dhs_a), gates = host(gates_a), hs = host(hs_a), h0 = host(h0_a),
       Wh = host(Wh_a);
  // Poisoned (NaN) until written: a read of something no thread wrote shows up in the results.
  Buffer dgx("dgx", (size_t)B * T * 3 * H), dgh("dgh", (size_t)B * T * 3 * H),
      dh0("dh0", (size_t)B * H), dh_direct("dh_direct", (size_t)B * H);
  auto opts = options(order, seed);
  dfnet4::gru_launch::backward(B, T, H, [&](const dfnet4::gru_launch::Dispatch& d) {
    dfk::GruStepParams p = d.params;  // `constant` is empty in C++: non-const
    if (d.name == "gru_backward_step") {
      metal_emu::dispatch_threadgroups(
          u3(d.groups), u3(d.threads), opts, [&](const ThreadPos& tp, void* const*) {
            gru_backward_step<float>(dhs.data(), gates.data(), hs.data(), h0.data(), Wh.data(),
                                     dgx.data(), dgh.data(), dh_direct.data(), p,
                                     tp.thread_position_in_grid);
          });
    } else if (d.name == "gru_backward_dh0") {
      metal_emu::dispatch_threadgroups(
          u3(d.groups), u3(d.threads), opts, [&](const ThreadPos& tp, void* const*) {
            gru_backward_dh0<float>(dgh.data(), Wh.data(), dh_direct.data(), dh0.data(), p,
                                    tp.thread_position_in_grid);
          });
    } else {
      throw std::logic_error(std::string("unexpected kernel ").append(d.name));
    }
  });
  dh_direct.check_bounds();
  return {to_mx(dgx, {B, T, 3 * H}), to_mx(dgh, {B, T, 3 * H}), to_mx(dh0, {B, H})};
}

void bind(nb::module_& m) {
  m.def("gru_forward", &forward, nb::arg("gx"), nb::arg("Wh"), nb::arg("bhn"), nb::arg("h0"),
        nb::arg("order") = "forward", nb::arg("seed") = 0,
        "Emulated Metal GRU forward (float32): (hs, gates), same contract as _ext.gru_forward.");
  m.def("gru_backward", &backward, nb::arg("dhs"), nb::arg("gates"), nb::arg("hs"), nb::arg("h0"),
        nb::arg("Wh"), nb::arg("order") = "forward", nb::arg("seed") = 0,
        "Emulated Metal GRU backward (float32): (dgx, dgh, dh0), same contract as _ext.gru_backward.");
}
DFNET4_REGISTER_BINDING(bind);

}  // namespace
