// The cooperative scheduler behind metal_emu::dispatch_* (emu_launch.h).
//
// Every logical thread of a threadgroup is an OS thread of a pool, but only one of them runs at a
// time. A thread runs until it parks at a sync point (barrier or SIMD collective) or returns; then,
// still on that thread, the scheduler completes whatever can complete and hands control directly
// to the next runnable thread of the current round (rounds visit threads in the launch's Order).
// The dispatching thread sleeps until the group is over. Hand-overs are releases of a per-thread Baton, which
// also order the plain memory accesses of consecutive threads.
#pragma once

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <numeric>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "emu_launch_types.h"

namespace metal_emu::detail {

// A one-shot hand-over signal (mutex + condition variable). Not std::binary_semaphore: libstdc++'s
// semaphores have known lost-wake-up bugs (GCC PR 104928, 98033), fatal for a scheduler.
class Baton {
 public:
  void release() {
    {
      std::lock_guard<std::mutex> lock(m_);
      ready_ = true;
    }
    cv_.notify_one();
  }
  void acquire() {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [this] { return ready_; });
    ready_ = false;
  }
  template <class Duration>
  bool try_acquire_for(Duration d) {
    std::unique_lock<std::mutex> lock(m_);
    if (!cv_.wait_for(lock, d, [this] { return ready_; })) return false;
    ready_ = false;
    return true;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool ready_ = false;
};

enum class Wait : unsigned char { Runnable, Collective, TgBarrier, Finished };

// One SIMD-group collective being completed: the lanes that take part and their operands.
struct SimdCall {
  uint width = 0;                 // lanes that exist in this SIMD-group (< 32 for a partial last one)
  bool present[kSimdWidth] = {};  // lanes taking part (Metal: the active lanes)
  const void* in[kSimdWidth] = {};
  void* out[kSimdWidth] = {};
  int arg[kSimdWidth] = {};
  std::string error;  // set by a combine function to fail the launch
};
using CombineFn = void (*)(SimdCall&);

// What a logical thread left at the sync point it waits at.
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
  unsigned index = 0;  // thread_index_in_threadgroup while a group runs
  Baton go;
  pthread_t handle{};
  ThreadPos pos{};
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

// Seconds a logical thread may run without reaching a sync point before the process is stopped
// (an endless loop, or a spin-wait on another thread, which the cooperative model cannot run).
inline double watchdog_seconds() {
  const char* s = std::getenv("METAL_EMU_WATCHDOG_S");
  return s ? std::atof(s) : 120.0;
}

class Scheduler {
 public:
  // The pool of the calling host thread; it grows to the largest threadgroup seen and is joined
  // when that host thread exits.
  static Scheduler& for_this_thread() {
    static thread_local Scheduler pool;
    return pool;
  }
  Scheduler() = default;
  ~Scheduler() { shutdown(); }
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs one threadgroup to completion; throws on divergence, deadlock or a kernel exception.
  void run_group(const Kernel& kernel, const std::vector<ThreadPos>& pos, void* const* buffers,
                 Order order, uint64_t seed, uint64_t group_salt) {
    if (running_) throw std::logic_error("metal_emu: a kernel started another dispatch");
    grow(static_cast<unsigned>(pos.size()));
    kernel_ = &kernel;
    buffers_ = buffers;
    n_ = static_cast<unsigned>(pos.size());
    group_ = pos.empty() ? uint3(0) : pos[0].threadgroup_position_in_grid;
    order_kind_ = order;
    seed_ = seed;
    salt_ = group_salt;
    wait_.assign(n_, Wait::Runnable);
    count_[0] = n_;
    count_[1] = count_[2] = count_[3] = 0;
    simd_runnable_.assign((n_ + kSimdWidth - 1) / kSimdWidth, 0);
    for (unsigned i = 0; i < n_; ++i) {
      workers_[i]->index = i;
      workers_[i]->pos = pos[i];
      ++simd_runnable_[i / kSimdWidth];
    }
    err_.clear();
    kernel_exc_ = nullptr;
    round_ = 0;
    start_round();
    const int first = pick_next();
    if (first < 0) return;  // empty group
    running_ = true;
    workers_[first]->go.release();
    wait_for_group();
    running_ = false;
    if (!err_.empty() || kernel_exc_) {
      abort_all();
      if (kernel_exc_) std::rethrow_exception(std::exchange(kernel_exc_, nullptr));
      throw std::runtime_error(err_);
    }
  }

  // Called on a logical thread: park at a sync point, let the others run, resume when released.
  static void block(Wait w, const Arrival& a) {
    Worker* me = current_worker;
    if (me == nullptr)
      throw std::logic_error(std::string("metal_emu: ") + a.what +
                             " called outside metal_emu::dispatch_threadgroups/dispatch_threads");
    Scheduler* s = me->sched;
    s->set_wait(me->index, w);
    me->arrival = a;
    const int next = s->step(me->index);
    if (next != int(me->index)) {
      s->hand_to(next);
      me->go.acquire();
    }
    if (s->aborting_) throw Aborted{};
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
          (*s->kernel_)(w->pos, s->buffers_);
        } catch (const Aborted&) {
        } catch (...) {
          s->kernel_exc_ = std::current_exception();
        }
      }
      s->set_wait(w->index, Wait::Finished);
      if (s->aborting_ || s->kernel_exc_) {
        s->main_.release();
      } else {
        s->hand_to(s->step(w->index));
      }
    }
  }

  void grow(unsigned n) {
    forget_workers_after_fork();
    if (workers_.size() >= n) return;
    if (workers_.empty()) owner_pid_ = getpid();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, size_t(1) << 20);
    while (workers_.size() < n) {
      auto w = std::make_unique<Worker>();
      w->sched = this;
      if (pthread_create(&w->handle, &attr, &Scheduler::worker_main, w.get()) != 0) {
        pthread_attr_destroy(&attr);
        throw std::runtime_error("metal_emu: could not start " + std::to_string(n) +
                                 " OS threads for one threadgroup");
      }
      workers_.push_back(std::move(w));
    }
    pthread_attr_destroy(&attr);
  }

  // Control goes to worker `next`, or back to the dispatching thread when the group is over.
  void hand_to(int next) {
    switches_.fetch_add(1, std::memory_order_relaxed);
    if (next < 0)
      main_.release();
    else
      workers_[next]->go.release();
  }

  // The dispatching thread sleeps; it only wakes to watch for a thread that never yields.
  void wait_for_group() {
    const double limit = watchdog_seconds();
    uint64_t seen = switches_.load(std::memory_order_relaxed);
    auto last = std::chrono::steady_clock::now();
    while (!main_.try_acquire_for(std::chrono::seconds(1))) {
      const uint64_t now_switches = switches_.load(std::memory_order_relaxed);
      const auto now = std::chrono::steady_clock::now();
      if (now_switches != seen) {
        seen = now_switches;
        last = now;
      } else if (limit > 0 && std::chrono::duration<double>(now - last).count() > limit) {
        std::fprintf(stderr,
                     "metal_emu: a thread of threadgroup %s has run for %.0f s without reaching a "
                     "sync point: an endless loop, or a spin-wait on another thread (the emulator "
                     "runs one thread at a time; Metal does not guarantee forward progress for "
                     "that either). Stopping the process. (METAL_EMU_WATCHDOG_S sets the limit.)\n",
                     fmt3(group_).c_str(), limit);
        std::abort();
      }
    }
  }

  // After thread i parked or returned: complete what can complete, choose who runs next.
  // Returns -1 when the group is over (all returned, or an error in err_).
  int step(unsigned i) {
    err_ = complete_simdgroup(i / kSimdWidth);
    if (err_.empty()) err_ = release_threadgroup_barrier();
    if (!err_.empty()) return -1;
    return pick_next();
  }

  void start_round() {
    order_ = make_order(n_, order_kind_, seed_, salt_ * 0x100000001B3ull + ++round_);
    cursor_ = 0;
    ran_in_round_ = false;
  }

  int pick_next() {
    for (;;) {
      while (cursor_ < order_.size()) {
        const unsigned i = order_[cursor_++];
        if (wait_[i] == Wait::Runnable) {
          ran_in_round_ = true;
          return int(i);
        }
      }
      if (all_finished()) return -1;
      if (!ran_in_round_) {
        err_ = deadlock_message();
        return -1;
      }
      start_round();
    }
  }

  bool all_finished() const { return count_[int(Wait::Finished)] == n_; }

  // State changes keep the counts that make each scheduling step O(1) on large groups.
  void set_wait(unsigned i, Wait w) {
    if (wait_[i] == Wait::Runnable) --simd_runnable_[i / kSimdWidth];
    if (w == Wait::Runnable) ++simd_runnable_[i / kSimdWidth];
    --count_[int(wait_[i])];
    ++count_[int(w)];
    wait_[i] = w;
  }

  // A SIMD-group's collectives complete once none of its lanes can run any more: every lane has
  // returned or waits at a sync point. Lanes waiting at the same call site form one collective;
  // lanes that returned, or wait elsewhere, are inactive for it (Metal: "active threads").
  std::string complete_simdgroup(unsigned s) {
    const unsigned lo = s * kSimdWidth, hi = std::min(n_, lo + kSimdWidth);
    if (simd_runnable_[s] > 0 || count_[int(Wait::Collective)] == 0) return {};
    bool pending = false;
    for (unsigned l = lo; l < hi; ++l) pending |= wait_[l] == Wait::Collective;
    if (!pending) return {};
    bool taken[kSimdWidth] = {};
    for (unsigned l = lo; l < hi; ++l) {
      if (wait_[l] != Wait::Collective || taken[l - lo]) continue;
      const Arrival& first = workers_[l]->arrival;
      SimdCall call;
      call.width = hi - lo;
      for (unsigned m = l; m < hi; ++m) {
        const Arrival& a = workers_[m]->arrival;
        if (wait_[m] != Wait::Collective || taken[m - lo] || a.fn != first.fn ||
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
        if (call.present[m - lo]) set_wait(m, Wait::Runnable);
    }
    return {};
  }

  // A threadgroup_barrier releases when every thread of the group waits at it.
  std::string release_threadgroup_barrier() {
    const unsigned waiting = count_[int(Wait::TgBarrier)], finished = count_[int(Wait::Finished)];
    if (waiting == 0 || waiting + finished < n_) return {};
    const Arrival* first = nullptr;
    for (unsigned i = 0; i < n_ && !first; ++i)
      if (wait_[i] == Wait::TgBarrier) first = &workers_[i]->arrival;
    if (finished > 0)
      return "metal_emu: barrier divergence in threadgroup " + fmt3(group_) + ": " +
             std::to_string(waiting) + " thread(s) wait at threadgroup_barrier (" +
             fmt_site(first->site) + ") but " + std::to_string(finished) +
             " thread(s) of the group returned without reaching it; every thread of a threadgroup "
             "must execute each threadgroup_barrier";
    for (unsigned i = 0; i < n_; ++i) {
      const Arrival& a = workers_[i]->arrival;
      if (wait_[i] == Wait::TgBarrier && !same_site(a.site, first->site))
        return "metal_emu: barrier divergence in threadgroup " + fmt3(group_) +
               ": threads wait at different threadgroup_barrier calls (" + fmt_site(first->site) +
               " and, in thread " + std::to_string(i) + ", " + fmt_site(a.site) +
               "); every thread of a threadgroup must execute the same barrier";
    }
    for (unsigned i = 0; i < n_; ++i) set_wait(i, Wait::Runnable);
    return {};
  }

  std::string deadlock_message() const {
    std::string m = "metal_emu: deadlock in threadgroup " + fmt3(group_) + ": no thread can run;";
    for (unsigned i = 0, shown = 0; i < n_ && shown < 16; ++i) {
      const Worker& w = *workers_[i];
      if (wait_[i] == Wait::Finished) continue;
      m += " thread " + std::to_string(i) + " waits at " + w.arrival.what + " (" +
           fmt_site(w.arrival.site) + ");";
      ++shown;
    }
    return m;
  }

  // Unwind every logical thread still parked (they throw Aborted) so the group ends cleanly.
  void abort_all() {
    aborting_ = true;
    for (unsigned i = 0; i < n_; ++i) {
      if (wait_[i] == Wait::Finished) continue;
      workers_[i]->go.release();
      main_.acquire();
    }
    aborting_ = false;
  }

  // In a fork()ed child the pool's OS threads do not exist: joining them, or destroying the
  // condition variables they waited on, could hang. Leak those objects and start afresh.
  void forget_workers_after_fork() {
    if (workers_.empty() || getpid() == owner_pid_) return;
    for (auto& w : workers_) static_cast<void>(w.release());
    workers_.clear();
  }

  void shutdown() {
    forget_workers_after_fork();
    shutdown_ = true;
    for (auto& w : workers_) {
      w->go.release();
      pthread_join(w->handle, nullptr);
    }
    workers_.clear();
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  Baton main_;
  std::atomic<uint64_t> switches_{0};
  const Kernel* kernel_ = nullptr;
  void* const* buffers_ = nullptr;
  unsigned n_ = 0;
  uint3 group_{0};
  Order order_kind_ = Order::Forward;
  uint64_t seed_ = 0, salt_ = 0, round_ = 0;
  std::vector<unsigned> order_;
  std::vector<Wait> wait_;                // per logical thread
  unsigned count_[4] = {};                // threads per Wait state
  std::vector<unsigned> simd_runnable_;   // runnable lanes per SIMD-group
  size_t cursor_ = 0;
  bool ran_in_round_ = false;
  std::string err_;
  std::exception_ptr kernel_exc_;
  bool running_ = false;
  bool aborting_ = false;
  bool shutdown_ = false;
  pid_t owner_pid_ = 0;
};

}  // namespace metal_emu::detail
