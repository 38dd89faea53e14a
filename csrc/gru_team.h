// A team of threads that runs one worker function per thread for a whole recurrence, with a
// barrier between time steps (MLX's CPU backend gives an eval one thread; we bring our own).
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

// Generation barrier: spins briefly (steps are tens of microseconds), then sleeps on a futex so a
// loaded machine is not burned by waiting threads.
class StepBarrier {
 public:
  explicit StepBarrier(int n) : n_(n) {}
  void wait() {
    if (n_ == 1) return;
    int gen = gen_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
      gen_.notify_all();
      return;
    }
    for (int spin = 0; spin < 4000; ++spin) {
      if (gen_.load(std::memory_order_acquire) != gen) return;
      DFNET4_CPU_RELAX();
    }
    while (gen_.load(std::memory_order_acquire) == gen) gen_.wait(gen, std::memory_order_acquire);
  }

 private:
  const int n_;
  std::atomic<int> arrived_{0};
  std::atomic<int> gen_{0};
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
