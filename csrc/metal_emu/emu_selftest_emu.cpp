// Self-test of the Metal emulator (metal/emu): runs the kernels of
// metal/emu/selftest/emu_selftest.metal and returns their raw outputs; tests/test_metal_emu.py
// checks them against numpy. Also the template for a kernel harness: host headers, then
// <metal_stdlib> + "emu_launch.h" + the .metal file, then "emu_end.h", then host code.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "selftest/emu_selftest.metal"
#include "emu_end.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::ThreadPos;

namespace {

uint3 to_uint3(const std::vector<uint>& v, const char* name) {
  if (v.size() != 3)
    throw std::invalid_argument(std::string(name) + " must have 3 entries, got " +
                                std::to_string(v.size()));
  return uint3(v[0], v[1], v[2]);
}

// Sum of each threadgroup's slice of x: out[g] (one dispatch_threadgroups, 1-D).
std::vector<float> tg_reduce(const std::vector<float>& x, uint groups, uint group_size, int variant,
                             const std::string& order, uint64_t seed,
                             std::vector<size_t> threadgroup_bytes) {
  std::vector<float> out(groups, 0.0f);
  uint n = uint(x.size());  // not const: `constant uint&` is a plain reference here
  LaunchOptions o = metal_emu::launch_options(order, seed);
  o.threadgroup_bytes = std::move(threadgroup_bytes);
  metal_emu::dispatch_threadgroups(uint3(groups, 1, 1), uint3(group_size, 1, 1), o,
                                   [&](const ThreadPos& p, void* const* tg) {
    auto* shared = static_cast<float*>(tg[0]);
    const uint gid = p.thread_position_in_grid.x, tid = p.thread_index_in_threadgroup;
    const uint g = p.threadgroup_position_in_grid.x, size = p.threads_per_threadgroup.x;
    switch (variant) {
      case 0: emu_tg_reduce<0>(x.data(), out.data(), n, shared, gid, tid, g, size); break;
      case 1: emu_tg_reduce<1>(x.data(), out.data(), n, shared, gid, tid, g, size); break;
      case 2: emu_tg_reduce<2>(x.data(), out.data(), n, shared, gid, tid, g, size); break;
      default:  // a harness error in the group's last thread while the others wait at a barrier
        if (tid + 1 == size) throw std::invalid_argument("variant must be 0, 1 or 2");
        emu_tg_reduce<0>(x.data(), out.data(), n, shared, gid, tid, g, size);
    }
  });
  return out;
}

// All SIMD collectives over x; groups of group_size threads (dispatch_threads, so the last group
// may be partial too). Returns kSimdOps rows of len(x), flattened.
std::vector<float> simd_ops(const std::vector<float>& x, uint group_size, const std::string& order,
                            uint64_t seed) {
  uint n = uint(x.size());  // not const: `constant uint&` is a plain reference here
  std::vector<float> out(size_t(kSimdOps) * n, 0.0f);
  LaunchOptions o = metal_emu::launch_options(order, seed);
  metal_emu::dispatch_threads(uint3(n, 1, 1), uint3(group_size, 1, 1), o,
                              [&](const ThreadPos& p, void* const*) {
    emu_simd_ops(x.data(), out.data(), n, p.thread_position_in_grid.x, p.thread_index_in_simdgroup);
  });
  return out;
}

void divergent(int mode, uint group_size, const std::string& order) {
  std::vector<float> out(group_size, 0.0f);
  LaunchOptions o = metal_emu::launch_options(order);
  metal_emu::dispatch_threadgroups(uint3(1, 1, 1), uint3(group_size, 1, 1), o,
                                   [&](const ThreadPos& p, void* const*) {
    const uint tid = p.thread_index_in_threadgroup;
    switch (mode) {
      case 0: emu_divergent<0>(out.data(), tid); break;
      case 1: emu_divergent<1>(out.data(), tid); break;
      default: emu_divergent<2>(out.data(), tid); break;
    }
  });
}

std::vector<uint> positions(const std::vector<uint>& grid_v, const std::vector<uint>& group_v,
                            bool uniform, const std::string& order, uint64_t seed) {
  const uint3 grid = to_uint3(grid_v, "grid"), group = to_uint3(group_v, "threads_per_group");
  LaunchOptions o = metal_emu::launch_options(order, seed);
  // Uniform: dispatch_threadgroups with `grid` counting groups; the grid of threads is grid*group.
  const uint3 threads = uniform ? grid * group : grid;
  std::vector<uint> out(size_t(kPosFields) * threads.x * threads.y * threads.z, 0u);
  auto kernel = [&](const ThreadPos& p, void* const*) {
    emu_positions(out.data(), p.thread_position_in_grid, p.threadgroup_position_in_grid,
                  p.thread_position_in_threadgroup, p.threads_per_threadgroup, p.threads_per_grid,
                  p.thread_index_in_threadgroup, p.thread_index_in_simdgroup,
                  p.simdgroup_index_in_threadgroup, p.simdgroups_per_threadgroup);
  };
  if (uniform)
    metal_emu::dispatch_threadgroups(grid, group, o, kernel);
  else
    metal_emu::dispatch_threads(grid, group, o, kernel);
  return out;
}

std::vector<uint> run_order(uint group_size, const std::string& order, uint64_t seed) {
  std::vector<uint> out(2 * size_t(group_size), 0u);
  metal::atomic_uint counter{0};
  LaunchOptions o = metal_emu::launch_options(order, seed);
  metal_emu::dispatch_threadgroups(uint3(1, 1, 1), uint3(group_size, 1, 1), o,
                                   [&](const ThreadPos& p, void* const*) {
    emu_run_order(out.data(), &counter, p.thread_index_in_threadgroup, p.threads_per_threadgroup.x);
  });
  return out;
}

void overflow(uint group_size) {
  LaunchOptions o;
  o.threadgroup_bytes = {size_t(group_size) * sizeof(float)};
  metal_emu::dispatch_threadgroups(uint3(1, 1, 1), uint3(group_size, 1, 1), o,
                                   [&](const ThreadPos& p, void* const* tg) {
    emu_overflow(static_cast<float*>(tg[0]), p.thread_index_in_threadgroup);
  });
}

std::vector<float> math(const std::vector<float>& x) {
  uint n = uint(x.size());  // not const: `constant uint&` is a plain reference here
  std::vector<float> out(size_t(kMathOps) * n, 0.0f);
  metal_emu::dispatch_threads(uint3(n, 1, 1), uint3(64, 1, 1), LaunchOptions{},
                              [&](const ThreadPos& p, void* const*) {
    emu_math(x.data(), out.data(), n, p.thread_position_in_grid.x);
  });
  return out;
}

// Runs emu_write_range on a DeviceBuffer of n floats and applies its checks.
std::vector<float> write_range(uint n, int offset, uint skip) {
  metal_emu::DeviceBuffer<float> out("out", n);
  metal_emu::dispatch_threads(uint3(n, 1, 1), uint3(32, 1, 1), LaunchOptions{},
                              [&](const ThreadPos& p, void* const*) {
    emu_write_range(out.data(), offset, skip, p.thread_position_in_grid.x);
  });
  out.check_bounds();
  out.check_written();
  return out.to_vector();
}

void bad_broadcast() {
  std::vector<float> out(32, 0.0f);
  metal_emu::dispatch_threadgroups(uint3(1, 1, 1), uint3(32, 1, 1), LaunchOptions{},
                                   [&](const ThreadPos& p, void* const*) {
    emu_bad_broadcast(out.data(), p.thread_index_in_simdgroup);
  });
}

// Never returns under the Forward order: the watchdog stops the process (test runs it in a child).
void spin_wait() {
  metal::atomic_uint flag{0};
  metal_emu::dispatch_threadgroups(uint3(1, 1, 1), uint3(2, 1, 1), LaunchOptions{},
                                   [&](const ThreadPos& p, void* const*) {
    emu_spin_wait(&flag, p.thread_index_in_threadgroup);
  });
}

// A collective called from a plain host thread (not inside a dispatch) is a usage error.
float simd_sum_outside_dispatch(float v) { return metal::simd_sum(v); }

void bind(nb::module_& m) {
  auto s = m.def_submodule("selftest", "Kernels that test the Metal emulator itself");
  s.attr("SIMD_OPS") = kSimdOps;
  s.attr("POS_FIELDS") = kPosFields;
  s.attr("MATH_OPS") = kMathOps;
  s.def("tg_reduce", &tg_reduce, nb::arg("x"), nb::arg("groups"), nb::arg("group_size"),
        nb::arg("variant"), nb::arg("order") = "forward", nb::arg("seed") = 0,
        nb::arg("threadgroup_bytes"));
  s.def("simd_ops", &simd_ops, nb::arg("x"), nb::arg("group_size"), nb::arg("order") = "forward",
        nb::arg("seed") = 0);
  s.def("divergent", &divergent, nb::arg("mode"), nb::arg("group_size"), nb::arg("order") = "forward");
  s.def("positions", &positions, nb::arg("grid"), nb::arg("threads_per_group"), nb::arg("uniform"),
        nb::arg("order") = "forward", nb::arg("seed") = 0);
  s.def("run_order", &run_order, nb::arg("group_size"), nb::arg("order"), nb::arg("seed") = 0);
  s.def("overflow", &overflow, nb::arg("group_size"));
  s.def("math", &math, nb::arg("x"));
  s.def("bad_broadcast", &bad_broadcast);
  s.def("write_range", &write_range, nb::arg("n"), nb::arg("offset"), nb::arg("skip"));
  s.def("spin_wait", &spin_wait, nb::call_guard<nb::gil_scoped_release>());
  s.def("simd_sum_outside_dispatch", &simd_sum_outside_dispatch, nb::arg("v"));
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
