// Emulated Metal dispatch (DESIGN.md decision 2): runs a kernel written for Metal on the CPU, one OS
// thread per logical GPU thread, so barriers and SIMD-group collectives behave as on the GPU.
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
#include <semaphore>
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

using Kernel = std::function<void(const ThreadPos&, void* const* threadgroup_buffers)>;

inline constexpr uint kSimdWidth = 32;                 // lanes per SIMD-group on Apple GPUs
inline constexpr uint kMaxThreadsPerThreadgroup = 1024;
inline constexpr size_t kMaxThreadgroupBytes = 32768;  // maxThreadgroupMemoryLength
inline constexpr size_t kThreadgroupBytesAlign = 16;   // setThreadgroupMemoryLength needs a multiple of 16

namespace detail {

inline std::string fmt3(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}
inline std::string fmt_site(const std::source_location& s) {
  return std::string(s.file_name()) + ":" + std::to_string(s.line());
}
inline bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         std::strcmp(a.file_name(), b.file_name()) == 0;
}

enum class Wait : unsigned char { Runnable, Collective, TgBarrier, Finished };

// One SIMD-group collective being completed: the lanes that take part and their operands.
struct SimdCall {
  uint width = 0;              // lanes that exist in this SIMD-group (< 32 for a partial last one)
  bool present[kSimdWidth] = {};  // lanes taking part (Metal: the active lanes)
  const void* in[kSimdWidth] = {};
  void* out[kSimdWidth] = {};
  int arg[kSimdWidth] = {};
  std::string error;           // set by a combine function to fail the launch
};
using CombineFn = void (*)(SimdCall&);

// What a logical thread left at the sync point it is waiting at.
struct Arrival {
  CombineFn fn = nullptr;
  const char* what = "";
  std::source_location site;
  const void* in = nullptr;
  void* out = nullptr;
  int arg = 0;
};

struct Aborted {};  // unwinds the logical threads of a failed launch

class Scheduler;

struct Worker {
  Scheduler* sched = nullptr;
  std::binary_semaphore go{0};
  pthread_t handle{};
  ThreadPos pos{};
  Wait wait = Wait::Finished;
  Arrival arrival;
};

inline thread_local Worker* current_worker = nullptr;

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Permutation of 0..n-1 for the given order; `salt` distinguishes groups and rounds.
inline std::vector<unsigned> make_order(unsigned n, Order order, uint64_t seed, uint64_t salt) {
  std::vector<unsigned> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  if (order == Order::Reverse) {
    std::reverse(idx.begin(), idx.end());
  } else if (order == Order::Shuffled) {
    uint64_t s = seed ^ (salt * 0xD1B54A32D192ED03ull);
    for (unsigned i = n; i > 1; --i) std::swap(idx[i - 1], idx[splitmix64(s) % i]);
  }
  return idx;
}

class Scheduler {
 public:
  Scheduler(unsigned max_threads, const Kernel& kernel) : kernel_(kernel) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    workers_.reserve(max_threads);
    for (unsigned i = 0; i < max_threads; ++i) {
      auto w = std::make_unique<Worker>();
      w->sched = this;
      if (pthread_create(&w->handle, &attr, &Scheduler::worker_main, w.get()) != 0) {
        pthread_attr_destroy(&attr);
        shutdown();
        throw std::runtime_error("metal_emu: could not start " + std::to_string(max_threads) +
                                 " OS threads for one threadgroup");
      }
      workers_.push_back(std::move(w));
    }
    pthread_attr_destroy(&attr);
  }
  ~Scheduler() { shutdown(); }
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs one threadgroup to completion; throws on divergence, deadlock or a kernel exception.
  void run_group(const std::vector<ThreadPos>& pos, void* const* buffers, Order order, uint64_t seed,
                 uint64_t group_salt) {
    n_ = static_cast<unsigned>(pos.size());
    buffers_ = buffers;
    group_ = pos.empty() ? uint3(0) : pos[0].threadgroup_position_in_grid;
    for (unsigned i = 0; i < n_; ++i) {
      workers_[i]->pos = pos[i];
      workers_[i]->wait = Wait::Runnable;
    }
    std::string err;
    for (uint64_t round = 0; err.empty() && !kernel_exc_ && !all_finished(); ++round) {
      bool ran = false;
      for (unsigned i : make_order(n_, order, seed, group_salt * 0x100000001B3ull + round + 1)) {
        if (workers_[i]->wait != Wait::Runnable) continue;
        ran = true;
        resume(i);
        if (kernel_exc_) break;
        err = complete_simdgroup(i / kSimdWidth);
        if (err.empty()) err = release_threadgroup_barrier();
        if (!err.empty()) break;
      }
      if (!ran && err.empty() && !kernel_exc_) err = deadlock_message();
    }
    if (!err.empty() || kernel_exc_) {
      abort_all();
      if (kernel_exc_) std::rethrow_exception(std::exchange(kernel_exc_, nullptr));
      throw std::runtime_error(err);
    }
  }

  // Called on a logical thread: park at a sync point and hand control back to the scheduler.
  static void block(Wait w, const Arrival& a) {
    Worker* me = current_worker;
    if (me == nullptr)
      throw std::logic_error(std::string("metal_emu: ") + a.what +
                             " called outside metal_emu::dispatch_threadgroups/dispatch_threads");
    me->wait = w;
    me->arrival = a;
    me->sched->main_.release();
    me->go.acquire();
    if (me->sched->aborting_) throw Aborted{};
  }

 private:
  static void* worker_main(void* p) {
    Worker* w = static_cast<Worker*>(p);
    current_worker = w;
    Scheduler* s = w->sched;
    for (;;) {
      w->go.acquire();
      if (s->shutdown_) return nullptr;
      if (!s->aborting_) {
        try {
          s->kernel_(w->pos, s->buffers_);
        } catch (const Aborted&) {
        } catch (...) {
          s->kernel_exc_ = std::current_exception();
        }
      }
      w->wait = Wait::Finished;
      s->main_.release();
    }
  }

  void resume(unsigned i) {
    workers_[i]->go.release();
    main_.acquire();
  }

  bool all_finished() const {
    for (unsigned i = 0; i < n_; ++i)
      if (workers_[i]->wait != Wait::Finished) return false;
    return true;
  }

  // A SIMD-group's collectives complete once none of its lanes can run any more: every lane has
  // returned or waits at a sync point. Lanes waiting at the same call site form one collective;
  // lanes that returned, or wait elsewhere, are inactive for it (Metal: "active threads").
  std::string complete_simdgroup(unsigned s) {
    const unsigned lo = s * kSimdWidth, hi = std::min(n_, lo + kSimdWidth);
    bool pending = false;
    for (unsigned l = lo; l < hi; ++l) {
      if (workers_[l]->wait == Wait::Runnable) return {};
      pending |= workers_[l]->wait == Wait::Collective;
    }
    if (!pending) return {};
    bool taken[kSimdWidth] = {};
    for (unsigned l = lo; l < hi; ++l) {
      if (workers_[l]->wait != Wait::Collective || taken[l - lo]) continue;
      const Arrival& first = workers_[l]->arrival;
      SimdCall call;
      call.width = hi - lo;
      for (unsigned m = l; m < hi; ++m) {
        const Arrival& a = workers_[m]->arrival;
        if (workers_[m]->wait != Wait::Collective || taken[m - lo] || a.fn != first.fn ||
            !same_site(a.site, first.site))
          continue;
        taken[m - lo] = true;
        call.present[m - lo] = true;
        call.in[m - lo] = a.in;
        call.out[m - lo] = a.out;
        call.arg[m - lo] = a.arg;
      }
      first.fn(call);
      if (!call.error.empty())
        return "metal_emu: " + std::string(first.what) + " at " + fmt_site(first.site) +
               " in threadgroup " + fmt3(group_) + ", simdgroup " + std::to_string(s) + ": " +
               call.error;
      for (unsigned m = lo; m < hi; ++m)
        if (call.present[m - lo]) workers_[m]->wait = Wait::Runnable;
    }
    return {};
  }

  // A threadgroup_barrier releases when every thread of the group waits at it.
  std::string release_threadgroup_barrier() {
    unsigned waiting = 0, finished = 0;
    const Arrival* first = nullptr;
    for (unsigned i = 0; i < n_; ++i) {
      switch (workers_[i]->wait) {
        case Wait::Runnable:
        case Wait::Collective:
          return {};
        case Wait::TgBarrier:
          if (!first) first = &workers_[i]->arrival;
          ++waiting;
          break;
        case Wait::Finished:
          ++finished;
          break;
      }
    }
    if (waiting == 0) return {};
    if (finished > 0)
      return "metal_emu: barrier divergence in threadgroup " + fmt3(group_) + ": " +
             std::to_string(waiting) + " thread(s) wait at threadgroup_barrier (" +
             fmt_site(first->site) + ") but " + std::to_string(finished) +
             " thread(s) of the group returned without reaching it; every thread of a threadgroup "
             "must execute each threadgroup_barrier";
    for (unsigned i = 0; i < n_; ++i) {
      const Arrival& a = workers_[i]->arrival;
      if (!same_site(a.site, first->site))
        return "metal_emu: barrier divergence in threadgroup " + fmt3(group_) +
               ": threads wait at different threadgroup_barrier calls (thread 0.. at " +
               fmt_site(first->site) + ", thread " + std::to_string(i) + " at " + fmt_site(a.site) +
               "); every thread of a threadgroup must execute the same barrier";
    }
    for (unsigned i = 0; i < n_; ++i) workers_[i]->wait = Wait::Runnable;
    return {};
  }

  std::string deadlock_message() const {
    std::string m = "metal_emu: deadlock in threadgroup " + fmt3(group_) + ": no thread can run;";
    for (unsigned i = 0; i < n_ && i < 64; ++i) {
      const Worker& w = *workers_[i];
      if (w.wait == Wait::Finished) continue;
      m += " thread " + std::to_string(i) + " waits at " + w.arrival.what + " (" +
           fmt_site(w.arrival.site) + ");";
    }
    return m;
  }

  // Unwind every logical thread still parked (they throw Aborted) so the group ends cleanly.
  void abort_all() {
    aborting_ = true;
    for (unsigned i = 0; i < n_; ++i)
      if (workers_[i]->wait != Wait::Finished) resume(i);
    aborting_ = false;
  }

  void shutdown() {
    shutdown_ = true;
    for (auto& w : workers_) {
      w->go.release();
      pthread_join(w->handle, nullptr);
    }
    workers_.clear();
  }

  const Kernel& kernel_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::binary_semaphore main_{0};
  void* const* buffers_ = nullptr;
  unsigned n_ = 0;
  uint3 group_{0};
  bool aborting_ = false;
  bool shutdown_ = false;
  std::exception_ptr kernel_exc_;
};

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
  Scheduler sched(prod(tpg), k);
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
    sched.run_group(pos, mem.pointers(), o.order, o.seed, uint64_t(g_lin) + 1);
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
