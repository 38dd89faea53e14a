// What every emulated-Metal harness (csrc/metal_emu/<op>_emu.cpp) shares: numpy arrays in and out,
// output and scratch buffers that are poisoned while the kernels run and must then have been
// written everywhere and nowhere outside, and the launch plan's sizes as the emulator's uint3.
// Host code: include it after "emu_end.h" (docs/metal-emulation.md, "Adding a kernel's harness").
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "emu_buffer.h"
#include "emu_launch.h"
#include "emu_launch_types.h"

namespace metal_emu::harness {

namespace nb = nanobind;

using In = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using Out = nb::ndarray<nb::numpy, float>;

// An optional input: its data, or null (the kernels never read an absent one, by their flags).
inline const float* opt(const std::optional<In>& a) { return a ? a->data() : nullptr; }

// An output or scratch buffer of the given shape: a poisoned, guarded DeviceBuffer while the
// kernels run; check() and release() (which hands it to numpy) require it written everywhere and
// nowhere outside.
struct Buffer {
  DeviceBuffer<float> device;
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

// A launch plan's size (any struct with x, y, z) as the emulator's.
template <class Size3>
uint3 u3(const Size3& s) {
  return uint3(uint(s.x), uint(s.y), uint(s.z));
}

// Runs kernel(thread_position_in_grid) for every thread of a launch plan's grid and group sizes.
template <class Size3, class Kernel>
void dispatch(const Size3& grid, const Size3& group, const LaunchOptions& o, Kernel&& kernel) {
  dispatch_threads(u3(grid), u3(group), o,
                   [&](const ThreadPos& t, void* const*) { kernel(t.thread_position_in_grid); });
}

}  // namespace metal_emu::harness
