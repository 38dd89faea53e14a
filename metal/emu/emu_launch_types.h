// The public types of the Metal emulator's launch API (see emu_launch.h), shared by the scheduler.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu_types.h"

namespace metal_emu {

struct ThreadPos {
  uint3 thread_position_in_grid, threadgroup_position_in_grid, thread_position_in_threadgroup,
      threads_per_threadgroup, threadgroups_per_grid, threads_per_grid;
  uint thread_index_in_threadgroup, thread_index_in_simdgroup, simdgroup_index_in_threadgroup,
      simdgroups_per_threadgroup, threads_per_simdgroup;
};

// Order in which the scheduler runs the runnable threads of a group (and the groups of a grid).
// Shuffled draws a fresh permutation, from `seed`, for every group and every scheduling round.
enum class Order { Forward, Reverse, Shuffled };

struct LaunchOptions {
  Order order = Order::Forward;
  uint64_t seed = 0;
  std::vector<size_t> threadgroup_bytes;  // one entry per [[threadgroup(i)]] buffer
};

// Options from a harness's arguments: the order by name ("forward", "reverse", "shuffled").
inline LaunchOptions launch_options(const std::string& order, uint64_t seed = 0) {
  LaunchOptions o;
  if (order == "forward") {
    o.order = Order::Forward;
  } else if (order == "reverse") {
    o.order = Order::Reverse;
  } else if (order == "shuffled") {
    o.order = Order::Shuffled;
  } else {
    // Appending (not "literal" + string) avoids a GCC 12 -Wrestrict false positive at -O3.
    std::string msg = "order must be 'forward', 'reverse' or 'shuffled', got '";
    throw std::invalid_argument(msg.append(order).append("'"));
  }
  o.seed = seed;
  return o;
}

using Kernel = std::function<void(const ThreadPos&, void* const* threadgroup_buffers)>;

inline constexpr uint kSimdWidth = 32;                 // lanes per SIMD-group on Apple GPUs
inline constexpr uint kMaxThreadsPerThreadgroup = 1024;
inline constexpr size_t kMaxThreadgroupBytes = 32768;  // maxThreadgroupMemoryLength
inline constexpr size_t kThreadgroupBytesAlign = 16;   // setThreadgroupMemoryLength needs a multiple of 16

namespace detail {

inline std::string fmt3(uint3 v) {
  // Appending (not "literal" + string) avoids a GCC 12 -Wrestrict false positive at -O3.
  std::string s = "(";
  return s.append(std::to_string(v.x)).append(",").append(std::to_string(v.y)).append(",")
      .append(std::to_string(v.z)).append(")");
}
inline std::string fmt_site(const std::source_location& s) {
  return std::string(s.file_name()) + ":" + std::to_string(s.line());
}
inline bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         std::strcmp(a.file_name(), b.file_name()) == 0;
}

}  // namespace detail
}  // namespace metal_emu
