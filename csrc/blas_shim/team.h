// The BLAS shim's helper threads: started once, asleep on a condition variable between products
// (never spinning, unlike OpenBLAS's own workers). A thread started per product made mid-size
// products slower half the time (a 512^3 sgemm: median 1.96 ms against 1.04 with these).
#pragma once
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace dfnet4::blas_shim {

class Team {
 public:
  // Calls work() on the caller and on `helpers` helper threads at once; returns when all are done.
  // One call at a time: a second caller waits for the first.
  void run(const std::function<void()>& work, int helpers) {
    std::lock_guard<std::mutex> one_at_a_time(run_mutex_);
    std::unique_lock<std::mutex> lock(mutex_);
    for (; started_ < helpers; ++started_) std::thread([this, i = started_] { serve(i); }).detach();
    job_ = &work;
    active_ = pending_ = helpers;
    ++generation_;
    lock.unlock();
    wake_.notify_all();
    work();
    lock.lock();
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  void serve(int index) {
    long seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= active_) continue;  // this product needs fewer helpers
      const auto* job = job_;
      lock.unlock();
      (*job)();
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void()>* job_ = nullptr;
  long generation_ = 0;
  int started_ = 0, active_ = 0, pending_ = 0;
};

// The process's team, made on first use and never destroyed (its detached threads sleep in it until
// the process ends). No fork handling: MLX itself does not run in a child forked after it ran.
inline Team& team() {
  static Team* const t = new Team;
  return *t;
}

}  // namespace dfnet4::blas_shim
