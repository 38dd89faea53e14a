// A team of threads that runs one worker function per thread for a whole recurrence, with the
// steps ordered by StepTasks (MLX's CPU backend gives an eval one thread; we bring our own).
#pragma once
#include <atomic>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DFNET4_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define DFNET4_CPU_RELAX() asm volatile("yield")
#else
#define DFNET4_CPU_RELAX() ((void)0)
#endif

namespace dfnet4 {

// The steps of a recurrence as a stream of tasks k = step * per_step + part, claimed by the
// threads of a team in order. A task of step s may start once every task of the steps before it
// is done. Unlike a barrier, a thread that the OS deschedules (a loaded machine) holds up the
// others only while it owns a claimed task, not for the whole step: whoever is running takes the
// next task. Which thread runs a task never changes its arithmetic (results are deterministic).
class StepTasks {
 public:
  StepTasks(long steps, int per_step) : per_step_(per_step), total_(steps * per_step) {}

  // The next task, or -1 when all are claimed.
  long claim() {
    long k = next_.fetch_add(1, std::memory_order_relaxed);
    return k < total_ ? k : -1;
  }
  int per_step() const { return per_step_; }

  // Waits until every task of the steps before `step` is done (their writes visible).
  void wait_for_step(long step) {
    const long need = step * per_step_;
    for (int spin = 0; spin < 2000; ++spin) {
      if (done_.load(std::memory_order_acquire) >= need) return;
      DFNET4_CPU_RELAX();
    }
    // Still waiting: the task may belong to a descheduled thread. Sleep (futex) so that it can
    // have this core, instead of spinning against it.
    for (long seen = done_.load(std::memory_order_acquire); seen < need;
         seen = done_.load(std::memory_order_acquire))
      done_.wait(seen, std::memory_order_acquire);
  }
  void finish() {
    done_.fetch_add(1, std::memory_order_release);
    done_.notify_all();  // no system call unless a thread is asleep in wait_for_step
  }

 private:
  const long per_step_, total_;
  std::atomic<long> next_{0};
  std::atomic<long> done_{0};
};

// Runs worker(w) for w in [0, n) on n threads (the caller is worker 0) and joins them.
// Workers must not throw (the kernels they run cannot fail once inputs are validated).
template <typename Worker>
void run_team(int n, Worker&& worker) {
  std::vector<std::thread> threads;
  threads.reserve(n > 1 ? n - 1 : 0);
  for (int w = 1; w < n; ++w) threads.emplace_back([&worker, w] { worker(w); });
  worker(0);
  for (auto& t : threads) t.join();
}

}  // namespace dfnet4
