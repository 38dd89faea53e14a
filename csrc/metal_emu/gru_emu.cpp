// Emulated-Metal harness of the GRU recurrence: compiles metal/gru.metal as C++ against metal/emu
// and runs it with the launch plan of eval_gpu (csrc/gru_launch.h). The tests
// (tests/test_gru_metal_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "gru_launch.h"
#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "gru.metal"
#include "emu_end.h"
#include "emu_harness.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::ThreadPos;
using namespace metal_emu::harness;
namespace L = dfnet4::gru_launch;

namespace {

[[noreturn]] void unexpected(const std::string& kernel) {
  throw std::logic_error(std::string("unexpected kernel ").append(kernel));
}

// Returns (hs, gates), the contract of _ext.gru_forward with bhn and h0 given.
nb::tuple forward(In gx, In Wh, In bhn, In h0, const std::string& order, uint64_t seed) {
  if (gx.ndim() != 3 || gx.shape(2) % 3 != 0) throw std::invalid_argument("gx must be (B, T, 3H)");
  const size_t B = gx.shape(0), T = gx.shape(1), H = gx.shape(2) / 3;
  Buffer hs("hs", {B, T, H}), gates("gates", {B, T, 4 * H});
  const LaunchOptions o = metal_emu::launch_options(order, seed);
  L::forward(int(B), int(T), int(H), [&](const L::Dispatch& d) {
    if (d.name != "gru_forward_step") unexpected(d.name);
    dfk::GruStepParams p = d.params;  // `constant` is empty in C++: non-const
    metal_emu::dispatch_threadgroups(u3(d.groups), u3(d.threads), o, [&](const ThreadPos& tp, void* const*) {
      gru_forward_step<float>(gx.data(), Wh.data(), bhn.data(), h0.data(), hs.ptr(), gates.ptr(), p,
                              tp.threadgroup_position_in_grid, tp.thread_index_in_simdgroup,
                              tp.simdgroup_index_in_threadgroup, tp.simdgroups_per_threadgroup,
                              tp.threads_per_simdgroup);
    });
  });
  return nb::make_tuple(hs.release(), gates.release());
}

// Returns (dgx, dgh, dh0), the contract of _ext.gru_backward with h0 given.
nb::tuple backward(In dhs, In gates, In hs, In h0, In Wh, const std::string& order, uint64_t seed) {
  if (hs.ndim() != 3) throw std::invalid_argument("hs must be (B, T, H)");
  const size_t B = hs.shape(0), T = hs.shape(1), H = hs.shape(2);
  Buffer dgx("dgx", {B, T, 3 * H}), dgh("dgh", {B, T, 3 * H}), dh0("dh0", {B, H});
  Buffer dh_direct("dh_direct", {B, H});  // scratch carried between the step dispatches
  const LaunchOptions o = metal_emu::launch_options(order, seed);
  L::backward(int(B), int(T), int(H), [&](const L::Dispatch& d) {
    dfk::GruStepParams p = d.params;
    if (d.name == "gru_backward_step") {
      metal_emu::dispatch_threadgroups(u3(d.groups), u3(d.threads), o, [&](const ThreadPos& tp, void* const*) {
        gru_backward_step<float>(dhs.data(), gates.data(), hs.data(), h0.data(), Wh.data(), dgx.ptr(), dgh.ptr(),
                                 dh_direct.ptr(), p, tp.thread_position_in_grid);
      });
    } else if (d.name == "gru_backward_dh0") {
      metal_emu::dispatch_threadgroups(u3(d.groups), u3(d.threads), o, [&](const ThreadPos& tp, void* const*) {
        gru_backward_dh0<float>(dgh.ptr(), Wh.data(), dh_direct.ptr(), dh0.ptr(), p, tp.thread_position_in_grid);
      });
    } else {
      unexpected(d.name);
    }
  });
  dh_direct.device.check_bounds();
  return nb::make_tuple(dgx.release(), dgh.release(), dh0.release());
}

void bind(nb::module_& m) {
  auto s = m.def_submodule("gru", "metal/gru.metal run on the emulator with eval_gpu's launch plan");
  s.def("forward", &forward, nb::arg("gx"), nb::arg("Wh"), nb::arg("bhn"), nb::arg("h0"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "Returns (hs, gates).");
  s.def("backward", &backward, nb::arg("dhs"), nb::arg("gates"), nb::arg("hs"), nb::arg("h0"), nb::arg("Wh"),
        nb::arg("order") = "forward", nb::arg("seed") = 0, "Returns (dgx, dgh, dh0).");
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
