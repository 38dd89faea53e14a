// CPU parallelism for the primitives' eval_cpu. MLX's CPU backend runs one op at a time on one
// thread, so our kernels bring their own threads (joined before eval returns).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dfnet4 {

// Worker count: DFNET4_NUM_THREADS if set (>= 1), else the hardware's.
inline int num_threads() {
  if (const char* env = std::getenv("DFNET4_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Calls fn(begin, end, worker) on contiguous slices of [0, n), one slice per worker, the caller's
// thread taking the first. Exceptions thrown by fn are rethrown on the calling thread.
template <typename Fn>
void parallel_for(long n, Fn&& fn, int max_workers = 0) {
  if (n <= 0) return;
  int workers = max_workers > 0 ? max_workers : num_threads();
  workers = static_cast<int>(std::min<long>(workers, n));
  if (workers <= 1) {
    fn(0L, n, 0);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int w) {
    long begin = n * w / workers, end = n * (w + 1) / workers;
    try {
      fn(begin, end, w);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (int w = 1; w < workers; ++w) threads.emplace_back(run, w);
  run(0);
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

// Calls fn(begin, end) on pieces of [0, n) of `grain` items, handed out on demand: a worker that the
// OS delays (a busy machine) does not hold up the others as it would with one fixed slice each.
// Which worker runs a piece never changes its arithmetic, so results do not depend on the threads.
template <typename Fn>
void dynamic_for(long n, long grain, Fn&& fn) {
  std::atomic<long> next{0};
  const long workers = std::min<long>(num_threads(), (n + grain - 1) / grain);
  parallel_for(workers, [&](long, long, int) {
    for (long begin = next.fetch_add(grain); begin < n; begin = next.fetch_add(grain)) {
      fn(begin, std::min(n, begin + grain));
    }
  });
}

}  // namespace dfnet4
