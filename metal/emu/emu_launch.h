// Emulated Metal dispatch (docs/architecture.md, docs/metal-emulation.md): runs a kernel written
// for Metal on the CPU, one OS thread per logical GPU thread, so barriers and SIMD-group
// collectives behave as on the GPU.
//
// Model: threadgroups run one after another. Inside a group a cooperative scheduler lets exactly
// one logical thread run at a time, in the launch's Order, and switches only when the running thread
// reaches a sync point (threadgroup_barrier, simdgroup_barrier, any simd_* collective) or returns.
// So the interleaving is deterministic for a given Order and seed, and a kernel that forgets a
// barrier reads stale or poisoned (0xFF = NaN) threadgroup memory under some Order.
// Launch errors (bad sizes, barrier divergence, deadlock) throw std::runtime_error.
//
// Plain host C++ (no Metal keywords): include it before or after <metal_stdlib>.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <numeric>
#include <source_location>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu_launch_types.h"
#include "emu_scheduler.h"

namespace metal_emu {
namespace detail {

inline uint prod(uint3 v) { return v.x * v.y * v.z; }

inline void check_dims(const char* fn, const char* what, uint3 v) {
  if (v.x == 0 || v.y == 0 || v.z == 0)
    throw std::runtime_error(std::string("metal_emu: ") + fn + ": " + what + " " + fmt3(v) +
                             " has a zero dimension; every dimension must be >= 1");
}

inline void check_launch(const char* fn, uint3 tpg, const LaunchOptions& o) {
  check_dims(fn, "threads_per_threadgroup", tpg);
  if (uint64_t(tpg.x) * tpg.y * tpg.z > kMaxThreadsPerThreadgroup)
    throw std::runtime_error(std::string("metal_emu: ") + fn + ": threads_per_threadgroup " +
                             fmt3(tpg) + " has " +
                             std::to_string(uint64_t(tpg.x) * tpg.y * tpg.z) +
                             " threads; Metal allows at most 1024 per threadgroup");
  size_t total = 0;
  for (size_t i = 0; i < o.threadgroup_bytes.size(); ++i) {
    if (o.threadgroup_bytes[i] % kThreadgroupBytesAlign != 0)
      throw std::runtime_error(std::string("metal_emu: ") + fn + ": threadgroup_bytes[" +
                               std::to_string(i) + "] = " + std::to_string(o.threadgroup_bytes[i]) +
                               " is not a multiple of 16 (Metal's setThreadgroupMemoryLength needs one)");
    total += o.threadgroup_bytes[i];
  }
  if (total > kMaxThreadgroupBytes)
    throw std::runtime_error(std::string("metal_emu: ") + fn + ": threadgroup buffers need " +
                             std::to_string(total) + " bytes in total; Metal allows at most 32768");
}

// Fresh threadgroup memory for one group: 0xFF bytes (NaN as float), each buffer followed by a
// guard zone that is checked after the group to catch writes past the end.
class ThreadgroupMemory {
 public:
  static constexpr size_t kGuard = 64;
  static constexpr unsigned char kGuardByte = 0xA5;
  explicit ThreadgroupMemory(const std::vector<size_t>& bytes) : bytes_(bytes) {
    for (size_t b : bytes_) {
      storage_.emplace_back(new (std::align_val_t(64)) unsigned char[b + kGuard]);
      std::memset(storage_.back().get(), 0xFF, b);
      std::memset(storage_.back().get() + b, kGuardByte, kGuard);
      ptrs_.push_back(storage_.back().get());
    }
    ptrs_.push_back(nullptr);
  }
  void* const* pointers() const { return ptrs_.data(); }
  void check(uint3 group) const {
    for (size_t i = 0; i < bytes_.size(); ++i)
      for (size_t k = 0; k < kGuard; ++k)
        if (storage_[i][bytes_[i] + k] != kGuardByte)
          throw std::runtime_error("metal_emu: threadgroup " + fmt3(group) +
                                   " wrote past the end of threadgroup buffer " + std::to_string(i) +
                                   " (" + std::to_string(bytes_[i]) + " bytes)");
  }

 private:
  struct AlignedDelete {
    void operator()(unsigned char* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::vector<size_t> bytes_;
  std::vector<std::unique_ptr<unsigned char[], AlignedDelete>> storage_;
  std::vector<void*> ptrs_;
};

// Runs every group of the grid. `grid` is the exact thread count per dimension; groups at the
// upper edge get the partial size (Metal's non-uniform threadgroups) when it is not a multiple.
inline void launch(uint3 groups, uint3 tpg, uint3 grid, const LaunchOptions& o, const Kernel& k) {
  Scheduler& sched = Scheduler::for_this_thread();
  const uint ngroups = prod(groups);
  std::vector<ThreadPos> pos;
  for (unsigned g_lin : make_order(ngroups, o.order, o.seed, 0)) {
    const uint3 g(g_lin % groups.x, (g_lin / groups.x) % groups.y, g_lin / (groups.x * groups.y));
    const uint3 size(std::min(tpg.x, grid.x - g.x * tpg.x), std::min(tpg.y, grid.y - g.y * tpg.y),
                     std::min(tpg.z, grid.z - g.z * tpg.z));
    const uint n = prod(size);
    pos.assign(n, ThreadPos{});
    for (uint l = 0; l < n; ++l) {
      ThreadPos& p = pos[l];
      const uint3 t(l % size.x, (l / size.x) % size.y, l / (size.x * size.y));
      p.thread_position_in_threadgroup = t;
      p.threadgroup_position_in_grid = g;
      p.thread_position_in_grid = g * tpg + t;
      p.threads_per_threadgroup = size;
      p.threadgroups_per_grid = groups;
      p.threads_per_grid = grid;
      p.thread_index_in_threadgroup = l;
      p.thread_index_in_simdgroup = l % kSimdWidth;
      p.simdgroup_index_in_threadgroup = l / kSimdWidth;
      p.simdgroups_per_threadgroup = (n + kSimdWidth - 1) / kSimdWidth;
      p.threads_per_simdgroup = kSimdWidth;
    }
    ThreadgroupMemory mem(o.threadgroup_bytes);
    sched.run_group(k, pos, mem.pointers(), o.order, o.seed, uint64_t(g_lin) + 1);
    mem.check(g);
  }
}

}  // namespace detail

// Metal's dispatchThreadgroups: `groups` threadgroups of `threads_per_group` threads each.
inline void dispatch_threadgroups(uint3 groups, uint3 threads_per_group, const LaunchOptions& o,
                                  const Kernel& k) {
  detail::check_dims("dispatch_threadgroups", "groups", groups);
  detail::check_launch("dispatch_threadgroups", threads_per_group, o);
  detail::launch(groups, threads_per_group, groups * threads_per_group, o, k);
}

// Metal's dispatchThreads: exactly `grid` threads; edge groups are partial (non-uniform).
inline void dispatch_threads(uint3 grid, uint3 threads_per_group, const LaunchOptions& o,
                             const Kernel& k) {
  detail::check_dims("dispatch_threads", "grid", grid);
  detail::check_launch("dispatch_threads", threads_per_group, o);
  const uint3 groups = (grid + threads_per_group - 1u) / threads_per_group;
  detail::launch(groups, threads_per_group, grid, o, k);
}

}  // namespace metal_emu
